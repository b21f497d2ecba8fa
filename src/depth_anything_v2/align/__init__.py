"""Alignment of predictions to known depth: batched, differentiable least-squares fits used by evaluation and
the losses (``least_squares``), and robust relative-to-metric alignment against measured depths (``metric``)."""
