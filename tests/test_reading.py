"""Reader read-outs: accuracy, per-class accuracy and confusion counts."""

import numpy as np
from sklearn.metrics import confusion_matrix

from inrroute.reading import accuracy_dataset


def test_accuracy_dataset_matches_sklearn():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 200)
    pred = np.where(rng.random(200) < 0.7, labels, rng.integers(0, 5, 200))
    ds = accuracy_dataset(pred, labels, n_classes=6)  # class 5 never occurs
    assert np.array_equal(ds["confusion"].values, confusion_matrix(labels, pred, labels=range(6)))
    assert float(ds["accuracy"]) == (pred == labels).mean()
    per_class = ds["per_class_accuracy"].values
    assert np.isnan(per_class[5])
    assert per_class[2] == (pred[labels == 2] == 2).mean()
