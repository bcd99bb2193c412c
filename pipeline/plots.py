"""Evaluation figures (PNG, for `dvc plots show` and the README) and the tables behind them."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: stages run without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import confusion_matrix  # noqa: E402

from pipeline.registry import ROLES, VARIANTS, parse_served  # noqa: E402


def top_confusions(
    labels: np.ndarray, preds: np.ndarray, names: list[str], n: int
) -> list[dict]:
    """The `n` most frequent (true, predicted) mistakes, most frequent first."""
    cm = confusion_matrix(labels, preds, labels=range(len(names)))
    np.fill_diagonal(cm, 0)
    flat = np.argsort(cm, axis=None, kind="stable")[::-1][:n]
    rows = []
    for i in flat:
        t, p = divmod(int(i), len(names))
        if cm[t, p] == 0:
            break
        rows.append({"true": names[t], "predicted": names[p], "count": int(cm[t, p])})
    return rows


def confusion_heatmap(
    labels: np.ndarray, preds: np.ndarray, names: list[str], pairs: list[dict], path: Path,
    title: str,
) -> None:
    """Confusion matrix restricted to the labels that take part in the top confusions."""
    involved = []
    for pair in pairs:
        for name in (pair["true"], pair["predicted"]):
            if name not in involved:
                involved.append(name)
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    if not involved:
        ax.text(0.5, 0.5, "no confusions", ha="center", va="center")
        ax.axis("off")
    else:
        ids = [names.index(n) for n in involved]
        cm = confusion_matrix(labels, preds, labels=range(len(names)))[np.ix_(ids, ids)]
        shown = cm.astype(float)
        np.fill_diagonal(shown, np.nan)  # the diagonal would drown the mistakes
        image = ax.imshow(shown, cmap="Reds")
        fig.colorbar(image, ax=ax, label="test examples (off-diagonal)")
        ax.set_xticks(range(len(involved)), involved, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(len(involved)), involved, fontsize=8)
        for (r, c), v in np.ndenumerate(cm):
            if v:
                ax.text(c, r, str(v), ha="center", va="center", fontsize=7,
                        color="black" if r != c else "#555555")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def per_class_f1_scatter(rows: list[dict], path: Path) -> None:
    teacher = np.array([r["teacher_f1"] for r in rows])
    student = np.array([r["student_f1"] for r in rows])
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot([0, 1], [0, 1], color="#999999", lw=1, ls="--", label="student = teacher")
    ax.scatter(teacher, student, s=18, color=ROLES["student"].color, alpha=0.7)
    worst = np.argsort(student - teacher)[:5]
    for i in worst:
        if student[i] < teacher[i]:
            ax.annotate(rows[i]["label"], (teacher[i], student[i]), fontsize=7,
                        xytext=(4, -8), textcoords="offset points")
    low = max(0.0, min(teacher.min(), student.min()) - 0.05)
    ax.set_xlim(low, 1.01)
    ax.set_ylim(low, 1.01)
    ax.set_xlabel("teacher F1")
    ax.set_ylabel("distilled student F1")
    ax.set_aspect("equal")
    ax.set_title("Per-class F1 on the test split (one dot per label)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def reliability_diagram(curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]],
                        eces: dict[str, float], path: Path) -> None:
    """curves: role -> (bin confidence, bin accuracy, bin count)."""
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.plot([0, 1], [0, 1], color="#999999", lw=1, ls="--", label="perfect calibration")
    for role, (conf, acc, count) in curves.items():
        keep = count > 0
        ax.plot(conf[keep], acc[keep], marker="o", ms=4, color=ROLES[role].color,
                label=f"{role} (ECE {eces[role]:.3f})")
    ax.set_xlabel("confidence (max softmax probability)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title("Reliability on the test split")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def accuracy_vs_latency(points: dict[str, tuple[float, float, float]], device: str,
                        path: Path) -> None:
    """points: served model (a role, or a role in an ONNX variant) -> (latency ms, accuracy,
    size MB). As Tunstall et al. draw it: a role keeps its colour in every format, the format
    is the marker."""
    fig, ax = plt.subplots(figsize=(7.5, 5))
    sizes = np.array([p[2] for p in points.values()])
    scale = 900 / max(sizes.max(), 1e-9)
    for name, (latency, accuracy, size) in points.items():
        role, variant = parse_served(name)
        style = ROLES[role]
        marker = VARIANTS[variant].marker if variant else "o"
        # Variants of one role sit close together: their labels step down from the role's.
        step = list(VARIANTS).index(variant) + 1 if variant else 0
        dx, dy = style.label_offset
        title = f"{style.title}, {VARIANTS[variant].title}" if variant else style.title
        ax.scatter(latency, accuracy, s=size * scale, color=style.color, marker=marker, alpha=0.5)
        ax.annotate(f"{title}: {accuracy:.3f}, {latency:.2g} ms, {size:.3g} MB",
                    (latency, accuracy), fontsize=7, xytext=(dx, dy - 11 * step),
                    textcoords="offset points", color=style.color)
    lats = [p[0] for p in points.values()]
    accs = [p[1] for p in points.values()]
    ax.set_xlim(0, max(lats) * 2.2)
    pad = max(0.02, (max(accs) - min(accs)) * 0.5)
    ax.set_ylim(max(0, min(accs) - pad), min(1.0, max(accs) + pad))
    ax.set_xlabel(f"batch-1 latency, median (ms) on {device}")
    ax.set_ylabel("test accuracy")
    ax.set_title("Accuracy vs latency (marker area = size on disk; o PyTorch, "
                 + ", ".join(f"{v.marker} {v.title}" for v in VARIANTS.values()) + ")",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def seed_pairs(seeds: list[str], baseline: list[float], student: list[float],
               reference: dict[str, float], path: Path, title: str) -> None:
    """One setting's runs side by side, seed by seed: the baseline's and the distilled
    student's test accuracy joined by a line labelled with the student's lead in points, and
    `reference` lines (name -> accuracy: the teacher) across."""
    x = np.arange(len(seeds))
    fig, ax = plt.subplots(figsize=(0.9 * len(seeds) + 3.4, 3.8))
    for name, value in reference.items():
        ax.axhline(value, color="0.4", linestyle="--", linewidth=1)
        ax.annotate(f"{name} {value:.3f}", (x[-1] + 0.45, value), fontsize=8, color="0.3",
                    ha="right", va="bottom")
    ax.vlines(x, baseline, student, color="0.7", linewidth=2, zorder=1)
    for role, values in (("baseline", baseline), ("student", student)):
        ax.scatter(x, values, color=ROLES[role].color, label=ROLES[role].title, zorder=2)
    for i, (b, s) in enumerate(zip(baseline, student)):
        ax.annotate(f"{100 * (s - b):+.2f}", (i, max(b, s)), xytext=(0, 6),
                    textcoords="offset points", ha="center", fontsize=8)
    ax.set_xticks(x, seeds)
    ax.set_xlim(-0.6, len(seeds) - 0.4)
    ax.set_xlabel("seed")
    ax.set_ylabel("test accuracy")
    lead = 100 * (np.asarray(student) - np.asarray(baseline))
    ax.set_title(f"{title}\nstudent − baseline {lead.mean():+.2f} ± {lead.std(ddof=1):.2f} "
                 "points (mean ± sd)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def grid_heatmap(values: dict[tuple[float, float], float], path: Path, title: str,
                 label: str, reference: dict[str, float]) -> None:
    """values: (alpha, temperature) -> score; `reference` lines (name -> score) go in the
    caption so the grid reads against the teacher and the undistilled student."""
    alphas = sorted({a for a, _ in values})
    temps = sorted({t for _, t in values})
    grid = np.full((len(temps), len(alphas)), np.nan)
    for (a, t), v in values.items():
        grid[temps.index(t), alphas.index(a)] = v
    fig, ax = plt.subplots(figsize=(1.3 * len(alphas) + 3, 0.9 * len(temps) + 2.4))
    image = ax.imshow(grid, cmap="viridis", origin="lower", aspect="auto")
    fig.colorbar(image, ax=ax, label=label)
    best = np.nanmax(grid)
    for (r, c), v in np.ndenumerate(grid):
        if not np.isnan(v):
            ax.text(c, r, f"{v:.3f}", ha="center", va="center", fontsize=9,
                    fontweight="bold" if v == best else "normal",
                    color="black" if v > np.nanmin(grid) + 0.6 * (best - np.nanmin(grid)) else "white")
    ax.set_xticks(range(len(alphas)), [f"{a:g}" for a in alphas])
    ax.set_yticks(range(len(temps)), [f"{t:g}" for t in temps])
    ax.set_xlabel("alpha (weight of the hard-label loss)")
    ax.set_ylabel("temperature")
    caption = ", ".join(f"{k} {v:.3f}" for k, v in reference.items())
    ax.set_title(f"{title}\n{caption}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
