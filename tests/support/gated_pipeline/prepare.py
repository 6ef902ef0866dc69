import os, sys
import numpy as np
from sklearn.datasets import load_breast_cancer
X, y = load_breast_cancer(return_X_y=True)
os.makedirs(sys.argv[1], exist_ok=True)
np.save(os.path.join(sys.argv[1], "X.npy"), X)
np.save(os.path.join(sys.argv[1], "y.npy"), y)
