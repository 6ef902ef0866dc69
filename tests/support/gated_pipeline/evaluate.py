import json, os, pickle, sys
import numpy as np
data, model = sys.argv[1:3]
X, y = np.load(os.path.join(data, "X.npy")), np.load(os.path.join(data, "y.npy"))
accuracy = float((pickle.load(open(model, "rb")).predict(X) == y).mean())
json.dump({"accuracy": round(accuracy, 4)}, open("metrics.json", "w"))
