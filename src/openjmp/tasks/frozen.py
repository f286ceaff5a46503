"""Frozen-backbone heads for tiny datasets: pooled pre-trained features + ridge or a small MLP.

The backbone is not trained at all. Every structure becomes one feature vector: the backbone's
per-atom output (``outputs["embedding"]``, (N, emb_atom)) pooled per structure by the head's
pooling (sum for energies, as extensive quantities; the configured pooling for scalars). A
head is then fitted in seconds on a CPU:

* `RidgeHead`: closed-form ridge regression on standardised features,
  w = (XᵀX + αI)⁻¹ Xᵀ(y − ȳ), the intercept unpenalised; α is chosen on the validation part from
  a log grid (`fit_ridge`). Several targets at once share X.
* `MLPHead`: Linear-SiLU-Linear on standardised features, AdamW full batch, the epoch with the
  best validation loss kept (`fit_mlp`).
* classification: `LogisticHead` (scikit-learn's L2 logistic regression, C chosen on val).

Targets are referenced and normalised as in end-to-end fine-tuning before fitting (the
statistics of `openjmp.tasks.finetune_stats`), so a ridge fit only has to explain the residual.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from openjmp.graph.batch import Batch
from openjmp.model.heads import Pooling, pool
from openjmp.model.jmp_model import EMBEDDING_KEY, JMPModel

ALPHAS = tuple(10.0 ** np.arange(-6, 4.5, 0.5))
"""Ridge penalties tried (features are standardised, so the scale is data independent)."""


@torch.no_grad()
def pooled_features(
    model: JMPModel, batches: Iterable[Batch], poolings: Iterable[Pooling]
) -> dict[str, np.ndarray]:
    """{pooling: (M, emb_atom) float64} per-structure pooled backbone features, in order."""
    wanted = list(dict.fromkeys(poolings))
    out: dict[str, list[np.ndarray]] = {p: [] for p in wanted}
    model.eval()
    for batch in batches:
        h = model(batch)[EMBEDDING_KEY]
        for p in wanted:
            out[p].append(pool(h, batch.batch, batch.num_graphs, p).double().cpu().numpy())
    return {p: np.concatenate(v) if v else np.zeros((0, 0)) for p, v in out.items()}


@dataclass
class Standardizer:
    """x̂ = (x − mean) / std per feature (constant features get std 1)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> Standardizer:
        std = x.std(0)
        return cls(x.mean(0), np.where(std > 1e-12, std, 1.0))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.std


@dataclass
class RidgeHead:
    """y ≈ standardize(x) · w + b for (M, D) features and (M,) or (M, k) targets."""

    scaler: Standardizer
    weight: np.ndarray  # (D,) or (D, k)
    bias: np.ndarray | float
    alpha: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.scaler(x) @ self.weight + self.bias


def ridge_solve(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(w, b) minimising ‖x w + b − y‖² + α‖w‖² (intercept unpenalised), closed form."""
    xm, ym = x.mean(0), y.mean(0)
    xc, yc = x - xm, y - ym
    a = xc.T @ xc + alpha * np.eye(x.shape[1])
    w = np.linalg.solve(a, xc.T @ yc)
    return w, ym - xm @ w


def fit_ridge(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    alphas: Iterable[float] = ALPHAS,
) -> tuple[RidgeHead, list[tuple[float, float]]]:
    """Ridge with α chosen by validation MAE; returns (head, [(α, val MAE)])."""
    scaler = Standardizer.fit(x_train)
    xt, xv = scaler(x_train), scaler(x_val)
    best: RidgeHead | None = None
    best_err = np.inf
    curve = []
    for alpha in alphas:
        w, b = ridge_solve(xt, y_train, float(alpha))
        err = float(np.mean(np.abs(xv @ w + b - y_val)))
        curve.append((float(alpha), err))
        if err < best_err:
            best, best_err = RidgeHead(scaler, w, b, float(alpha)), err
    assert best is not None
    return best, curve


class MLPHead(nn.Module):
    """Linear(D, H) → SiLU → Linear(H, k) on standardised features."""

    def __init__(
        self, scaler: Standardizer, num_inputs: int, num_outputs: int, hidden: int = 64
    ) -> None:
        super().__init__()
        self.scaler = scaler
        self.net = nn.Sequential(
            nn.Linear(num_inputs, hidden), nn.SiLU(), nn.Linear(hidden, num_outputs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    @torch.no_grad()
    def predict(self, x: np.ndarray) -> np.ndarray:
        t = torch.as_tensor(self.scaler(x), dtype=torch.float32)
        return self.net(t).double().numpy()


def fit_mlp(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    hidden: int = 64,
    epochs: int = 500,
    lr: float = 3e-3,
    weight_decay: float = 1e-3,
    classes: int | None = None,
    seed: int = 0,
) -> tuple[MLPHead, list[tuple[int, float]]]:
    """Small MLP, full-batch AdamW, L1 loss (regression) or cross-entropy (``classes``); the
    weights of the epoch with the lowest validation loss are kept. Returns (head, [(epoch, val
    loss)] every 10 epochs)."""
    torch.manual_seed(seed)
    scaler = Standardizer.fit(x_train)
    xt = torch.as_tensor(scaler(x_train), dtype=torch.float32)
    xv = torch.as_tensor(scaler(x_val), dtype=torch.float32)
    if classes is None:
        yt = torch.as_tensor(np.reshape(y_train, (len(y_train), -1)), dtype=torch.float32)
        yv = torch.as_tensor(np.reshape(y_val, (len(y_val), -1)), dtype=torch.float32)
        k = yt.shape[1]
        loss_fn: nn.Module = nn.L1Loss()
    else:
        yt = torch.as_tensor(y_train, dtype=torch.long)
        yv = torch.as_tensor(y_val, dtype=torch.long)
        k = classes
        loss_fn = nn.CrossEntropyLoss()
    head = MLPHead(scaler, xt.shape[1], k, hidden)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    best_state, best_loss = None, np.inf
    curve = []
    for epoch in range(epochs):
        head.train()
        opt.zero_grad()
        loss = loss_fn(head(xt), yt)
        loss.backward()
        opt.step()
        head.eval()
        with torch.no_grad():
            val = float(loss_fn(head(xv), yv))
        if val < best_loss:
            best_loss = val
            best_state = {n: t.detach().clone() for n, t in head.state_dict().items()}
        if epoch % 10 == 0:
            curve.append((epoch, val))
    assert best_state is not None
    head.load_state_dict(best_state)
    return head, curve


@dataclass
class LogisticHead:
    """L2 logistic regression on standardised features (scikit-learn)."""

    scaler: Standardizer
    model: object

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(M, C) class log-probabilities (argmax = predicted class)."""
        return np.asarray(self.model.predict_log_proba(self.scaler(x)))  # type: ignore[attr-defined]


def fit_logistic(
    x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray
) -> tuple[LogisticHead, list[tuple[float, float]]]:
    """Logistic regression with C chosen by validation balanced accuracy."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score

    scaler = Standardizer.fit(x_train)
    best, best_score, curve = None, -np.inf, []
    for c in 10.0 ** np.arange(-3, 3.5, 1.0):
        model = LogisticRegression(C=float(c), max_iter=2000, class_weight="balanced")
        model.fit(scaler(x_train), y_train)
        score = float(balanced_accuracy_score(y_val, model.predict(scaler(x_val))))
        curve.append((float(c), score))
        if score > best_score:
            best, best_score = model, score
    return LogisticHead(scaler, best), curve
