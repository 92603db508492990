"""Layers, losses and the recording of layer inputs and output gradients (``record``)."""

from tinycurv.nn.layers import (
    ELU,
    AvgPool2d,
    Conv2d,
    Flatten,
    Linear,
    MaxPool2d,
    ReLU,
    Sigmoid,
    Tanh,
)
from tinycurv.nn.losses import CrossEntropyLoss, MSELoss
from tinycurv.nn.module import Module, Sequential
from tinycurv.nn.record import Record, record

__all__ = [
    "ELU",
    "AvgPool2d",
    "Conv2d",
    "CrossEntropyLoss",
    "Flatten",
    "Linear",
    "MSELoss",
    "MaxPool2d",
    "Module",
    "ReLU",
    "Record",
    "Sequential",
    "Sigmoid",
    "Tanh",
    "record",
]
