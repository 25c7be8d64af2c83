"""scikit-learn's digits as the quickstart's private data."""

from __future__ import annotations

import numpy as np

from gptfl_hpc.data.digits import DIGIT_LABELS, load_digits


def test_digits_shape_labels_and_split():
    train, test = load_digits("train"), load_digits("test")
    assert len(train) + len(test) == 1797
    assert abs(len(test) - 0.2 * 1797) < 10
    assert train.labels == DIGIT_LABELS and train.labels[0] == "digit zero" and len(train.labels) == 10
    x, y = train[0]
    assert x.shape == (32, 32, 3) and x.dtype == np.uint8
    assert np.array_equal(x[..., 0], x[..., 1])  # grey, repeated over channels
    assert x[0, 0, 0] == 255 and x.min() < 64  # dark ink on white paper
    assert set(np.unique(test.targets)) == set(range(10))  # stratified: every class is tested


def test_digits_split_is_a_function_of_the_seed():
    a, b = load_digits("test", split_seed=1), load_digits("test", split_seed=1)
    c = load_digits("test", split_seed=2)
    assert np.array_equal(a.samples, b.samples)
    assert not np.array_equal(a.samples, c.samples)
    assert load_digits("train", image_size=16)[0][0].shape == (16, 16, 3)
