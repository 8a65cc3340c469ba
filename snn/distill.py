"""Knowledge distillation into SNNs as Trainer callbacks.

:class:`KD` is response-based distillation (Hinton et al. 2015) as KDSNN uses it (Xu et al., CVPR
2023): the student SNN's time-averaged logits learn the softened class distribution of a frozen
teacher, typically a non-spiking ANN (``spiketrum train --model ann``) on the same spike input.
:class:`LaSNN` (Hong et al. 2023) adds attention transfer between the teacher's and the student's
layers, one layer after another, then all together.
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
        kd.expects = (run.encoder.to_json(), float(run.dt), list(run.classes))
        return kd

    def check(self, encoder, dt, classes):
        """Refuse a teacher from a run with another encoder, time bin or classes than the student's."""
        if getattr(self, "expects", None) and self.expects != (encoder.to_json(), float(dt), list(classes)):
            raise ValueError(f"{self.source}: the teacher was trained on another encoding, time bin or other classes "
                             "than this run; distil only between runs on the same input")

    def on_train_begin(self, trainer):
        self.teacher.to(trainer.device)

    def loss(self, trainer, logits, y, x, lengths, loss):
        with torch.no_grad():
            target = self.teacher(x, lengths)
        return (1 - self.alpha) * loss + self.alpha * kd_loss(logits, target, self.temperature)

    def settings(self):
        return {"method": "kd", "teacher": self.source, "temperature": self.temperature, "alpha": self.alpha}


def attention(features, lengths=None, p=2):
    """Temporal attention map of a feature sequence ``[T, B, ...]``: the mean of ``|F|^p`` over the features of each
    step, L2-normalised over the valid steps; shape ``[B, T]``."""
    T, B = features.shape[:2]
    a = features.abs().pow(p).reshape(T, B, -1).mean(-1)
    if lengths is not None:
        a = a * (torch.arange(T, device=a.device)[:, None] < torch.as_tensor(lengths, device=a.device)[None, :])
    return F.normalize(a.t(), dim=1)


def at_loss(student, teacher, lengths=None):
    """Attention-transfer loss (Zagoruyko & Komodakis 2017) between two feature sequences of the same length: 0 when
    they agree, and unchanged when either is scaled."""
    return (attention(student, lengths) - attention(teacher, lengths)).pow(2).mean()


def stages(model):
    """The modules whose outputs are a model's stages, input side first: spiking layers, or GRU layers."""
    for name in ("neurons", "grus"):  # SRNN, ANN
        if hasattr(model, name):
            return list(getattr(model, name))
    if hasattr(model, "convs"):  # ConvSNN
        return [*model.convs, *([model.hidden] if model.hidden is not None else [])]
    raise ValueError(f"{type(model).__name__} has no stages to distil into")


class LaSNN(KD):
    """Layer-wise attention distillation: ``KD`` plus ``beta`` x attention transfer between stages.

    Student stage ``j`` of ``J`` is paired with teacher stage ``floor(j * J_teacher / J)``. With
    ``schedule="layerwise"``, the first ``stage_fraction`` of training is split into ``J`` stages: in
    stage ``j`` the loss is stage ``j``'s attention transfer alone, which trains the student's layers up
    to ``j``; the rest of training uses cross-entropy, KD and every stage's attention transfer.
    ``schedule="single"`` uses that full loss throughout.
    """

    def __init__(self, teacher, beta=1000.0, schedule="layerwise", stage_fraction=0.25, temperature=4.0, alpha=0.5,
                 source=""):
        super().__init__(teacher, temperature, alpha, source)
        if schedule not in ("layerwise", "single"):
            raise ValueError(f"schedule must be 'layerwise' or 'single', got {schedule!r}")
        if not beta >= 0 or not 0 <= stage_fraction < 1:
            raise ValueError("need beta >= 0 and 0 <= stage_fraction < 1")
        self.beta, self.schedule, self.stage_fraction = beta, schedule, stage_fraction
        self._seen, self._hooks = {}, []

    def _capture(self, key, index):
        def hook(module, inputs, output):
            self._seen[key, index] = output[0] if isinstance(output, tuple) else output
        return hook

    def on_train_begin(self, trainer):
        super().on_train_begin(trainer)
        if not self._hooks:
            for key, model in (("s", trainer.model), ("t", self.teacher)):
                self._hooks += [m.register_forward_hook(self._capture(key, i)) for i, m in enumerate(stages(model))]
        self._pairs = [(j, j * len(stages(self.teacher)) // len(stages(trainer.model))) for j in range(len(stages(trainer.model)))]

    def stage(self, trainer):
        """The layer-wise stage of the current step (``None``: the final, joint stage)."""
        if self.schedule == "single":
            return None
        j = int(trainer.step / max(1.0, self.stage_fraction * trainer.total_steps) * len(self._pairs))
        return j if j < len(self._pairs) else None

    def loss(self, trainer, logits, y, x, lengths, loss):
        full = super().loss(trainer, logits, y, x, lengths, loss)  # runs the teacher, which fills its stages
        T = x.shape[0]
        ats = [at_loss(self._seen["s", j].reshape(T, x.shape[1], -1), self._seen["t", k], lengths) for j, k in self._pairs]
        j = self.stage(trainer)
        # 0 * full keeps every parameter in the graph, so that DistributedDataParallel sees them all
        return self.beta * ats[j] + 0.0 * full if j is not None else full + self.beta * sum(ats)

    def settings(self):
        return {**super().settings(), "method": "lasnn", "beta": self.beta, "schedule": self.schedule,
                "stage_fraction": self.stage_fraction}
