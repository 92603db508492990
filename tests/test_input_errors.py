"""Bad arguments to layers and losses fail where the mistake is made, naming what was wrong.

One test case per class of bad input: sizes that are not positive integers, strides below 1,
negative padding, non-finite constants (at construction); pooling windows larger than the
padded input and empty batches (at the call). Each case checks the exception's type and that
its message names the argument and the allowed values.
"""

from __future__ import annotations

import numpy as np
import pytest

from tinycurv import nn
from tinycurv.backend import asarray
from tinycurv.tensor import Tensor


def _zeros(*shape: int) -> object:
    return asarray(np.zeros(shape))


# what to call, the exception type, and substrings its message must contain
CONSTRUCTION = [
    pytest.param(
        lambda: nn.Linear(-1, 3),
        ValueError,
        ["in_features", "a positive integer", "-1"],
        id="linear-in-negative",
    ),
    pytest.param(
        lambda: nn.Linear(0, 3),
        ValueError,
        ["in_features", "a positive integer"],
        id="linear-in-zero",
    ),
    pytest.param(
        lambda: nn.Linear(3, 0),
        ValueError,
        ["out_features", "a positive integer"],
        id="linear-out-zero",
    ),
    pytest.param(
        lambda: nn.Linear(2.5, 3),
        TypeError,
        ["in_features", "a positive integer", "2.5"],
        id="linear-in-float",
    ),
    pytest.param(
        lambda: nn.Linear(3, 2.0),
        TypeError,
        ["out_features", "a positive integer"],
        id="linear-out-float",
    ),
    pytest.param(
        lambda: nn.Linear(True, 3),
        TypeError,
        ["in_features", "a positive integer"],
        id="linear-in-bool",
    ),
    pytest.param(
        lambda: nn.Linear("3", 3),
        TypeError,
        ["in_features", "a positive integer"],
        id="linear-in-str",
    ),
    pytest.param(
        lambda: nn.Conv2d(0, 2, 3),
        ValueError,
        ["in_channels", "a positive integer"],
        id="conv-in-channels-zero",
    ),
    pytest.param(
        lambda: nn.Conv2d(1, -2, 3),
        ValueError,
        ["out_channels", "a positive integer"],
        id="conv-out-channels-negative",
    ),
    pytest.param(
        lambda: nn.Conv2d(1.5, 2, 3),
        TypeError,
        ["in_channels", "a positive integer"],
        id="conv-channels-float",
    ),
    pytest.param(
        lambda: nn.Conv2d(1, 2, 0),
        ValueError,
        ["kernel_size", "a positive integer"],
        id="conv-kernel-zero",
    ),
    pytest.param(
        lambda: nn.Conv2d(1, 2, (3, 0)),
        ValueError,
        ["kernel_size", "a positive integer"],
        id="conv-kernel-pair-zero",
    ),
    pytest.param(
        lambda: nn.Conv2d(1, 2, (3, 3, 3)),
        ValueError,
        ["kernel_size", "pair"],
        id="conv-kernel-triple",
    ),
    pytest.param(
        lambda: nn.Conv2d(1, 2, 3, stride=0),
        ValueError,
        ["stride", "a positive integer"],
        id="conv-stride-zero",
    ),
    pytest.param(
        lambda: nn.Conv2d(1, 2, 3, stride=(1, -1)),
        ValueError,
        ["stride", "a positive integer"],
        id="conv-stride-pair-negative",
    ),
    pytest.param(
        lambda: nn.Conv2d(1, 2, 3, padding=-1),
        ValueError,
        ["padding", "≥ 0"],
        id="conv-padding-negative",
    ),
    pytest.param(
        lambda: nn.Conv2d(1, 2, 3, padding=0.5),
        TypeError,
        ["padding", "≥ 0"],
        id="conv-padding-float",
    ),
    pytest.param(
        lambda: nn.MaxPool2d(0),
        ValueError,
        ["MaxPool2d", "kernel_size", "a positive integer"],
        id="maxpool-kernel-zero",
    ),
    pytest.param(
        lambda: nn.AvgPool2d((2, -1)),
        ValueError,
        ["AvgPool2d", "kernel_size", "a positive integer"],
        id="avgpool-kernel-negative",
    ),
    pytest.param(
        lambda: nn.MaxPool2d(2, stride=0),
        ValueError,
        ["MaxPool2d", "stride", "a positive integer"],
        id="maxpool-stride-zero",
    ),
    pytest.param(
        lambda: nn.AvgPool2d(2, stride=(0, 1)),
        ValueError,
        ["AvgPool2d", "stride", "a positive integer"],
        id="avgpool-stride-zero",
    ),
    pytest.param(
        lambda: nn.MaxPool2d(2, padding=-1),
        ValueError,
        ["padding", "≥ 0"],
        id="pool-padding-negative",
    ),
    pytest.param(
        lambda: nn.AvgPool2d(2, padding=2),
        ValueError,
        ["padding", "half the kernel"],
        id="pool-padding-over-half",
    ),
    pytest.param(
        lambda: nn.ELU(float("nan")),
        ValueError,
        ["alpha", "finite"],
        id="elu-alpha-nan",
    ),
    pytest.param(
        lambda: nn.ELU(float("inf")),
        ValueError,
        ["alpha", "finite"],
        id="elu-alpha-inf",
    ),
    pytest.param(
        lambda: nn.ELU("1"),
        TypeError,
        ["alpha", "finite"],
        id="elu-alpha-str",
    ),
]


@pytest.mark.parametrize("make, error, patterns", CONSTRUCTION)
def test_bad_constructor_arguments_raise_at_construction(make, error, patterns):
    with pytest.raises(error) as info:
        make()
    for pattern in patterns:
        assert pattern in str(info.value), (pattern, str(info.value))


CALLS = [
    pytest.param(
        lambda: nn.MaxPool2d(3)(_zeros(1, 1, 2, 2)),
        ["MaxPool2d: the 3×3 window does not fit the padded 2×2 input"],
        id="maxpool-window-too-large",
    ),
    pytest.param(
        lambda: nn.AvgPool2d((1, 5))(_zeros(2, 3, 4, 4)),
        ["AvgPool2d: the 1×5 window does not fit the padded 4×4 input"],
        id="avgpool-window-too-wide",
    ),
    pytest.param(
        lambda: nn.MaxPool2d(5, padding=1)(_zeros(1, 1, 1, 1)),
        ["the 5×5 window does not fit the padded 3×3 input", "1×1 with padding 1×1"],
        id="maxpool-window-too-large-padded",
    ),
    pytest.param(
        lambda: nn.Conv2d(1, 2, 3)(_zeros(1, 1, 2, 5)),
        ["Conv2d", "2×5", "smaller than the kernel 3×3"],
        id="conv-input-smaller-than-kernel",
    ),
]


@pytest.mark.parametrize("call, patterns", CALLS)
def test_an_input_smaller_than_the_window_raises_naming_both(call, patterns):
    with pytest.raises(ValueError) as info:
        call()
    for pattern in patterns:
        assert pattern in str(info.value), (pattern, str(info.value))


EMPTY_BATCH = {
    "Linear": (lambda: nn.Linear(3, 2, rng=0), (0, 3)),
    "Conv2d": (lambda: nn.Conv2d(1, 2, 3, rng=0), (0, 1, 4, 4)),
    "MaxPool2d": (lambda: nn.MaxPool2d(2), (0, 1, 4, 4)),
    "AvgPool2d": (lambda: nn.AvgPool2d(2), (0, 1, 4, 4)),
    "Flatten": (nn.Flatten, (0, 1, 4, 4)),
    "ReLU": (nn.ReLU, (0, 3)),
    "Tanh": (nn.Tanh, (0, 3)),
    "Sigmoid": (nn.Sigmoid, (0, 3)),
    "ELU": (nn.ELU, (0, 3)),
}


@pytest.mark.parametrize("name", list(EMPTY_BATCH))
def test_an_empty_batch_raises_in_every_layer(name):
    make, shape = EMPTY_BATCH[name]
    with pytest.raises(ValueError, match=rf"^{name}: empty batch \(0 samples\)"):
        make()(_zeros(*shape))


def test_an_empty_batch_raises_in_a_model_at_its_first_layer():
    model = nn.Sequential(nn.Linear(3, 4, rng=0), nn.Tanh(), nn.Linear(4, 2, rng=0))
    with pytest.raises(ValueError, match=r"Linear: empty batch \(0 samples\)"):
        model(_zeros(0, 3))


@pytest.mark.parametrize(
    "loss, targets",
    [
        (nn.MSELoss(), lambda: _zeros(0, 3)),
        (nn.CrossEntropyLoss(), lambda: asarray(np.zeros(0, dtype=np.int64))),
        (nn.CrossEntropyLoss(), lambda: np.zeros(0, dtype=np.int64)),  # host labels
    ],
    ids=["mse", "cross-entropy", "cross-entropy-host-labels"],
)
def test_an_empty_batch_raises_in_the_losses(loss, targets):
    """Was ZeroDivisionError in the batch mean."""
    with pytest.raises(ValueError, match=rf"{type(loss).__name__}: empty batch \(0 samples\)"):
        loss(Tensor(_zeros(0, 3), requires_grad=True), targets())


@pytest.mark.parametrize(
    "targets, patterns",
    [
        (lambda: asarray(np.array([0.0, 1.0, 2.0])), ["integer labels", "float64"]),
        (lambda: asarray(np.array([0, 1])), ["integer labels of shape (3,)", "(2,)"]),
        (lambda: np.array([0, 4, 1]), ["labels must lie in [0, 4)", "[0, 4]"]),
        (lambda: np.array([0, -1, 1]), ["labels must lie in [0, 4)", "[-1, 1]"]),
    ],
    ids=["float-labels", "wrong-count", "label-too-large", "label-negative"],
)
def test_bad_cross_entropy_targets_raise_naming_the_allowed_values(targets, patterns):
    with pytest.raises(ValueError) as info:
        nn.CrossEntropyLoss()(Tensor(_zeros(3, 4)), targets())
    for pattern in patterns:
        assert pattern in str(info.value), (pattern, str(info.value))


def test_a_scalar_output_has_no_batch_axis():
    with pytest.raises(ValueError, match="MSELoss: outputs must have a batch axis"):
        nn.MSELoss()(Tensor(_zeros()), _zeros())


def test_the_valid_edge_cases_still_work():
    """NumPy integers as sizes, windows that fit exactly, padding that makes a window fit."""
    layer = nn.Linear(np.int64(3), np.int32(2), rng=0)
    assert (layer.in_features, layer.out_features) == (3, 2)
    assert type(layer.in_features) is int
    assert nn.Conv2d(1, 2, (np.int64(2), 3), stride=[1, 2], padding=0, rng=0).kernel_size == (2, 3)
    assert nn.MaxPool2d(2)(_zeros(1, 1, 2, 2)).shape == (1, 1, 1, 1)
    assert nn.AvgPool2d(3, padding=1)(_zeros(1, 1, 1, 1)).shape == (1, 1, 1, 1)
    assert nn.Conv2d(1, 1, 3, padding=1, rng=0)(_zeros(1, 1, 1, 1)).shape == (1, 1, 1, 1)
    assert nn.ELU(np.float32(0.5)).alpha == 0.5
    assert nn.ReLU()(_zeros(1, 3)).shape == (1, 3)
