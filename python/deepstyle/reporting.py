"""Files that report on training, shared by ``deepstyle netbp`` and ``deepstyle train``: CSV
tables and (with matplotlib, the optional ``plot`` extra) figures, all written atomically.

Without matplotlib :func:`pyplot` returns None; callers then write only the CSV files and
print :data:`PLOT_HINT`.
"""

from __future__ import annotations

import io

import numpy as np

from .image import write_atomically

PLOT_HINT = "install matplotlib for the plots: pip install 'deepstyle[plot]'"


def write_csv(path, header, rows):
    """A CSV file with a header line; floats to 10 significant digits."""
    text = io.StringIO()
    text.write(",".join(header) + "\n")
    for row in rows:
        text.write(",".join(f"{v:.10g}" if isinstance(v, float) else str(v) for v in row) + "\n")
    write_atomically(path, lambda f: f.write(text.getvalue().encode()))


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend, or None when matplotlib is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_figure(plt, fig, path):
    write_atomically(path, lambda f: fig.savefig(f, format="png", dpi=120))
    plt.close(fig)


def plot_training_curves(plt, history, path, title=""):
    """Figure 11: per epoch, cost, top-1 error and top-5 error (%), training as circles and
    validation as crosses. ``history``: dicts with the columns of the training CSV."""
    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    panels = [("cost", "objective", 1.0), ("top1_error", "top-1 error (%)", 100.0),
              ("top5_error", "top-5 error (%)", 100.0)]
    for ax, (key, label, scale) in zip(axes, panels):
        ax.plot(epochs, [scale * row[f"train_{key}"] for row in history], "o-", mfc="none",
                label="training")
        ax.plot(epochs, [scale * row[f"val_{key}"] for row in history], "x-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(plt, fig, path)


def confusion_rows(counts, classes):
    """Figure 13 as CSV rows: counts[i, j] = predicted i, true j, each with its percentage of
    all images; a last column with each row's precision and a last row with each column's
    recall, the corner the overall accuracy."""
    total = counts.sum()
    rows = []
    for i, name in enumerate(classes):
        row = [name] + [f"{c} ({100 * c / total:.1f}%)" for c in counts[i]]
        predicted = counts[i].sum()
        row.append(f"{100 * counts[i, i] / predicted:.1f}%" if predicted else "-")
        rows.append(row)
    recall = [f"{100 * counts[j, j] / counts[:, j].sum():.1f}%" if counts[:, j].sum() else "-"
              for j in range(len(classes))]
    rows.append(["all"] + recall + [f"{100 * np.trace(counts) / max(total, 1):.1f}%"])
    return rows


def write_confusion_csv(path, counts, classes):
    write_csv(path, ["predicted \\ true"] + list(classes) + ["all"],
              confusion_rows(counts, classes))


def plot_confusion(plt, counts, classes, path, title="Confusion matrix"):
    """Figure 13: counts and percentages, rows the output class, columns the target class; the
    last column ("all") each output class's share right / wrong, the last row each target
    class's, the corner the overall accuracy."""
    k = len(classes)
    total = max(counts.sum(), 1)

    def right_wrong(right, of):
        return f"{100 * right / of:.1f}%\n{100 - 100 * right / of:.1f}%" if of else "-"

    fig, ax = plt.subplots(figsize=(1.0 * k + 4, 0.8 * k + 3))
    shade = np.zeros((k + 1, k + 1))
    shade[:k, :k] = counts / total
    ax.imshow(shade, cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{counts[i, j]}\n{100 * counts[i, j] / total:.1f}%", ha="center",
                    va="center", fontsize=7,
                    color="white" if counts[i, j] > 0.5 * counts.max() else "black")
        ax.text(k, i, right_wrong(counts[i, i], counts[i].sum()), ha="center", va="center",
                fontsize=7)
        ax.text(i, k, right_wrong(counts[i, i], counts[:, i].sum()), ha="center", va="center",
                fontsize=7)
    ax.text(k, k, right_wrong(np.trace(counts), total), ha="center", va="center", fontsize=7,
            fontweight="bold")
    ax.set_xticks(range(k + 1), list(classes) + ["all"], rotation=45, ha="right")
    ax.set_yticks(range(k + 1), list(classes) + ["all"])
    ax.set_xlabel("target class")
    ax.set_ylabel("output class")
    ax.set_title(title)
    fig.tight_layout()
    save_figure(plt, fig, path)


def plot_image_grid(plt, images, captions, path, columns=4):
    """Figure 15: images (N, C, H, W) uint8 in a grid, each with its caption."""
    n = len(images)
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.6 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, caption in zip(axes.ravel(), images, captions):
        picture = np.transpose(image, (1, 2, 0))
        if picture.shape[2] == 1:
            ax.imshow(picture[:, :, 0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(picture)
        ax.set_title(caption, fontsize=8)
    fig.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=0.9, hspace=0.6)  # (tight_layout
    save_figure(plt, fig, path)  # costs seconds for 16 panels)
