"""`advlab data info` and `advlab data fetch`."""

from __future__ import annotations

import argparse

import torch

from advlab.cli.common import splits_of
from advlab.data import fetch_fashion_mnist, fetch_mnist


def cmd_data_info(args: argparse.Namespace) -> int:
    splits = splits_of(args)
    print(splits.source)
    if splits.class_to_idx is not None:
        print("classes (folder -> label): " + ", ".join(f"{name} -> {label}" for name, label in splits.class_to_idx.items()))
    for split in (splits.train, splits.test):
        counts = torch.bincount(split.labels, minlength=10).tolist()  # per label 0..max
        print(f"{split.name}: {len(split)} images of shape {tuple(split.images.shape[1:])}, per class {counts}")
    return 0


def cmd_data_fetch(args: argparse.Namespace) -> int:
    fetch = fetch_fashion_mnist if args.dataset == "fashion-mnist" else fetch_mnist
    paths = fetch(args.dir, **({"mirrors": tuple(args.mirror)} if args.mirror else {}))
    for path in paths:
        print(path)
    return 0
