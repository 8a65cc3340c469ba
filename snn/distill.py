"""Knowledge distillation into SNNs as Trainer callbacks.

:class:`KD` is response-based distillation (Hinton et al. 2015) as KDSNN uses it (Xu et al., CVPR
2023): the student SNN's time-averaged logits learn the softened class distribution of a frozen
teacher, typically a non-spiking ANN (``spiketrum train --model ann``) on the same spike input.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .trainer import Callback


def kd_loss(student_logits, teacher_logits, temperature):
    """``T^2 KL(softmax(teacher / T) || softmax(student / T))``, averaged over the batch; 0 when they agree."""
    t = temperature
    return t * t * F.kl_div(F.log_softmax(student_logits / t, 1), F.log_softmax(teacher_logits / t, 1),
                            log_target=True, reduction="batchmean")


class KD(Callback):
    """Train against ``(1 - alpha) * CE + alpha * kd_loss(student, teacher, temperature)``.

    Parameters
    ----------
    teacher : torch.nn.Module
        ``teacher(x, lengths) -> logits`` on the student's input; frozen here.
    temperature : float
        Softening of both distributions (> 0).
    alpha : float
        Weight of the distillation term, in [0, 1].
    source : str
        Where the teacher came from, recorded with the run.
    """

    def __init__(self, teacher, temperature=4.0, alpha=0.5, source=""):
        if not temperature > 0 or not 0 <= alpha <= 1:
            raise ValueError(f"need temperature > 0 and 0 <= alpha <= 1, got {temperature!r}, {alpha!r}")
        self.teacher, self.temperature, self.alpha, self.source = teacher.eval(), temperature, alpha, str(source)
        for p in self.teacher.parameters():
            p.requires_grad_(False)

    @classmethod
    def from_run(cls, run_dir, device=None, **kwargs):
        """The model of a ``spiketrum train`` run as the teacher (see :meth:`check`)."""
        from .kws import Run

        run = Run.load(run_dir, device=device or "cpu")
        kd = cls(run.model, source=run_dir, **kwargs)
        kd.expects = (run.encoder.to_json(), list(run.classes))
        return kd

    def check(self, encoder, classes):
        """Refuse a teacher from a run with another encoder or other classes than the student's."""
        if getattr(self, "expects", None) and self.expects != (encoder.to_json(), list(classes)):
            raise ValueError(f"{self.source}: the teacher was trained on another encoding or other classes than "
                             "this run; distil only between runs on the same input")

    def on_train_begin(self, trainer):
        self.teacher.to(trainer.device)

    def loss(self, trainer, logits, y, x, lengths, loss):
        with torch.no_grad():
            target = self.teacher(x, lengths)
        return (1 - self.alpha) * loss + self.alpha * kd_loss(logits, target, self.temperature)

    def settings(self):
        return {"method": "kd", "teacher": self.source, "temperature": self.temperature, "alpha": self.alpha}
