"""Training and validation loss plotted in the terminal (plotext)."""

from __future__ import annotations

from textual_plotext import PlotextPlot

from ..metrics import RunProgress


class LossChart(PlotextPlot):
    """Loss against step: the training loss as a line, validation loss as points."""

    def show(self, progress: RunProgress) -> None:
        """Plot the run's loss history (an empty plot while there is none)."""
        plt = self.plt
        plt.clear_data()
        plt.xlabel("step")
        if progress.steps:
            plt.plot(progress.steps, progress.losses, label="train", marker="braille")
        if progress.eval_steps:
            plt.scatter(progress.eval_steps, progress.val_losses, label="valid", marker="●")
        self.refresh()
