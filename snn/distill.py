"""Knowledge distillation into SNNs as Trainer callbacks.

:class:`KD` is response-based distillation (Hinton et al. 2015) as KDSNN uses it (Xu et al., CVPR
2023): the student SNN's time-averaged logits learn the softened class distribution of a frozen
teacher, typically a non-spiking ANN (``spiketrum train --model ann``) on the same spike input.
:class:`LaSNN` (Hong et al. 2023) adds attention transfer between the teacher's and the student's
layers, one layer after another, then all together. Both take feature KD through adapters, an online
(jointly trained) teacher, or, for KD, the teacher-free virtual teacher.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .models import ANN, step_mask, valid_mean
from .trainer import Callback


def kd_loss(student_logits, teacher_logits, temperature):
    """``T^2 KL(softmax(teacher / T) || softmax(student / T))``, averaged over the batch; 0 when they agree."""
    t = temperature
    return t * t * F.kl_div(F.log_softmax(student_logits / t, 1), F.log_softmax(teacher_logits / t, 1),
                            log_target=True, reduction="batchmean")


def virtual_logits(y, n_classes, correct=0.9):
    """Logits of the teacher-free virtual teacher (Yuan et al. 2020): probability ``correct`` on the true class,
    the rest spread evenly over the others."""
    p = torch.full((y.shape[0], n_classes), (1 - correct) / max(n_classes - 1, 1), device=y.device)
    p.scatter_(1, y[:, None], correct)
    return p.log()


class KD(Callback):
    """Train against ``(1 - alpha) * CE + alpha * kd_loss(student, teacher, temperature)``, plus optional feature KD.

    Parameters
    ----------
    teacher : torch.nn.Module or None
        ``teacher(x, lengths) -> logits`` on the student's input; frozen unless ``online``. None with
        ``online``: a fresh :class:`~snn.models.ANN` built for the run's input (see :meth:`check`); None
        without: the teacher-free virtual teacher (:func:`virtual_logits`).
    temperature : float, optional
        Softening of both distributions (> 0). None: 4, or 1 for the virtual teacher, whose target is already a
        smoothed distribution (at 4 it flattens to 25 % on the true class; on FSDD that cost 2 points).
    alpha : float
        Weight of the distillation term, in [0, 1].
    source : str
        Where the teacher came from, recorded with the run.
    feature_beta : float
        Weight of feature KD: each student stage's time-averaged output (its spike rates) passes a linear adapter
        and learns the paired teacher stage's time-averaged features (mean squared error). The adapters train
        alongside the student with their own Adam; 0 turns it off.
    online : bool
        Train the teacher jointly, on the same batches with its own cross-entropy and Adam (online KD); the KD
        target is detached, so the student never pulls the teacher.
    lr : float
        Learning rate of the adapters and of an online teacher.
    input_key : object, optional
        What the teacher was trained on (see :meth:`check`).
    """

    def __init__(self, teacher=None, temperature=None, alpha=0.5, source="", feature_beta=0.0, online=False, lr=2e-3,
                 input_key=None):
        if temperature is None:
            temperature = 1.0 if teacher is None and not online else 4.0
        if not temperature > 0 or not 0 <= alpha <= 1 or not feature_beta >= 0:
            raise ValueError(f"need temperature > 0, 0 <= alpha <= 1 and feature_beta >= 0, got {temperature!r}, "
                             f"{alpha!r}, {feature_beta!r}")
        if teacher is None and feature_beta > 0 and not online:
            raise ValueError("feature KD needs a teacher with features (not the virtual teacher)")
        self.temperature, self.alpha, self.source = temperature, alpha, str(source) or ("ann" if online else "virtual")
        self.feature_beta, self.online, self.lr, self.input_key = feature_beta, online, lr, input_key
        self.teacher, self._seen, self._hooks, self.adapters = None, {}, [], None
        self._teacher_opt = self._adapter_opt = None
        if teacher is not None:
            self._set_teacher(teacher)

    def _set_teacher(self, teacher):
        self.teacher = teacher.train(self.online)
        for p in teacher.parameters():
            p.requires_grad_(self.online)
        if self.online:
            self._teacher_opt = torch.optim.Adam(teacher.parameters(), lr=self.lr)

    def check(self, n_in, n_classes, dt, input_key=None):
        """Before training: refuse a teacher trained on other input than the student's, and build the online
        ANN teacher for ``n_in`` channels, ``n_classes`` classes and ``dt`` ms bins.

        ``input_key`` says what the student's input is (its encoder, time bin and classes, in any comparable
        form); a teacher given ``input_key`` at construction must match it.
        """
        if self.input_key is not None and input_key is not None and self.input_key != input_key:
            raise ValueError(f"{self.source}: the teacher was trained on another encoding, time bin or other classes "
                             "than this run; distil only between runs on the same input")
        if self.teacher is None and self.online:
            self._set_teacher(ANN(n_in, n_classes, hidden=(256,), dt=dt))

    def _capture(self, key, index):
        def hook(module, inputs, output):
            self._seen[key, index] = output[0] if isinstance(output, tuple) else output
        return hook

    def on_train_begin(self, trainer):
        if self.online and trainer.world_size > 1:
            raise ValueError("online KD trains its teacher on one process; run it without torchrun")
        if self.teacher is not None:
            self.teacher.to(trainer.device)
        if self.feature_beta > 0 or isinstance(self, LaSNN):
            if not self._hooks:
                for key, model in (("s", trainer.model), ("t", self.teacher)):
                    self._hooks += [m.register_forward_hook(self._capture(key, i)) for i, m in enumerate(stages(model))]
            n_s, n_t = len(stages(trainer.model)), len(stages(self.teacher))
            self._pairs = [(j, j * n_t // n_s) for j in range(n_s)]

    def _features(self, key, j, T, B, lengths):
        """Stage ``j``'s output averaged over valid steps: [B, features]."""
        return valid_mean(self._seen[key, j].reshape(T, B, -1), step_mask(T, lengths, lengths.device))

    def _feature_loss(self, x, lengths):
        T, B = x.shape[:2]
        pairs = [(self._features("s", j, T, B, lengths), self._features("t", k, T, B, lengths).detach())
                 for j, k in self._pairs]
        if self.adapters is None:  # sized by the first batch; then trained with the student
            self.adapters = torch.nn.ModuleList(torch.nn.Linear(s.shape[1], t.shape[1]) for s, t in pairs).to(x.device)
            self._adapter_opt = torch.optim.Adam(self.adapters.parameters(), lr=self.lr)
            if getattr(self, "_pending", None):
                self.adapters.load_state_dict(self._pending["adapters"])
                self._adapter_opt.load_state_dict(self._pending["adapter_opt"])
        return sum(F.mse_loss(a(s), t) for a, (s, t) in zip(self.adapters, pairs)) / len(pairs)

    def loss(self, trainer, logits, y, x, lengths, loss):
        teacher_ce = 0.0
        if self.teacher is None:
            target = virtual_logits(y, logits.shape[1])
        elif self.online:
            teacher_logits = self.teacher(x, lengths)
            target = teacher_logits.detach()
            teacher_ce = F.cross_entropy(teacher_logits, y)  # only the teacher's own parameters get this gradient
        else:
            with torch.no_grad():
                target = self.teacher(x, lengths)
        total = (1 - self.alpha) * loss + self.alpha * kd_loss(logits, target, self.temperature) + teacher_ce
        if self.feature_beta > 0:
            total = total + self.feature_beta * self._feature_loss(x, lengths)
        return total

    def on_step_end(self, trainer):
        for opt in (self._teacher_opt, self._adapter_opt):
            if opt is not None:
                opt.step()
                opt.zero_grad(set_to_none=True)

    def state_dict(self):
        state = {}
        if self.online:
            state.update(teacher=self.teacher.state_dict(), teacher_opt=self._teacher_opt.state_dict())
        if self.adapters is not None:
            state.update(adapters=self.adapters.state_dict(), adapter_opt=self._adapter_opt.state_dict())
        return state

    def load_state_dict(self, state):
        if "teacher" in state:
            self.teacher.load_state_dict(state["teacher"])
            self._teacher_opt.load_state_dict(state["teacher_opt"])
        if "adapters" in state:
            self._pending = state  # the adapters are built at the first batch

    def settings(self):
        s = {"method": "kd", "teacher": self.source, "temperature": self.temperature, "alpha": self.alpha}
        if self.feature_beta > 0:
            s["feature_beta"] = self.feature_beta
        if self.online:
            s["online"] = True
        return s


def attention(features, lengths=None, p=2):
    """Temporal attention map of a feature sequence ``[T, B, ...]``: the mean of ``|F|^p`` over the features of each
    step, L2-normalised over the valid steps; shape ``[B, T]``."""
    T, B = features.shape[:2]
    a = features.abs().pow(p).reshape(T, B, -1).mean(-1)
    if lengths is not None:
        a = a * step_mask(T, lengths, a.device)
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

    def __init__(self, teacher, beta=100.0, schedule="layerwise", stage_fraction=0.25, temperature=None, alpha=0.5,
                 source="", **kwargs):
        super().__init__(teacher, temperature, alpha, source, **kwargs)
        if self.teacher is None and not self.online:
            raise ValueError("LaSNN needs a teacher with layers (not the virtual teacher)")
        if schedule not in ("layerwise", "single"):
            raise ValueError(f"schedule must be 'layerwise' or 'single', got {schedule!r}")
        if not beta >= 0 or not 0 <= stage_fraction < 1:
            raise ValueError("need beta >= 0 and 0 <= stage_fraction < 1")
        self.beta, self.schedule, self.stage_fraction = beta, schedule, stage_fraction

    def stage(self, trainer):
        """The layer-wise stage of the current step (``None``: the final, joint stage)."""
        if self.schedule == "single":
            return None
        j = int(trainer.step / max(1.0, self.stage_fraction * trainer.total_steps) * len(self._pairs))
        return j if j < len(self._pairs) else None

    def loss(self, trainer, logits, y, x, lengths, loss):
        full = super().loss(trainer, logits, y, x, lengths, loss)  # runs the teacher, which fills its stages
        T = x.shape[0]
        ats = [at_loss(self._seen["s", j].reshape(T, x.shape[1], -1), self._seen["t", k].detach(), lengths)
               for j, k in self._pairs]
        j = self.stage(trainer)
        # 0 * full keeps every parameter in the graph, so that DistributedDataParallel sees them all
        return self.beta * ats[j] + 0.0 * full if j is not None else full + self.beta * sum(ats)

    def settings(self):
        return {**super().settings(), "method": "lasnn", "beta": self.beta, "schedule": self.schedule,
                "stage_fraction": self.stage_fraction}
