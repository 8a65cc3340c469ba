"""Knowledge distillation: the KD term vanishes when the student agrees with the teacher, and it pulls a
student towards the teacher; a non-spiking teacher trains on the same input."""
import json
import subprocess
import sys

import pytest
import torch

from snn.distill import KD, kd_loss
from snn.models import ANN, SRNN
from snn.trainer import Trainer


def test_kd_loss_is_zero_iff_student_equals_teacher():
    z = torch.randn(8, 5)
    assert float(kd_loss(z, z, 4.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(kd_loss(z + 3.0, z, 2.0)) == pytest.approx(0.0, abs=1e-5)  # softmax ignores a shift
    other = torch.randn(8, 5)
    assert float(kd_loss(other, z, 4.0)) > 1e-3


def test_kd_term_matches_hinton_and_moves_the_student_to_the_teacher():
    torch.manual_seed(0)
    teacher, student = ANN(6, 3, hidden=8, dt=10.0), SRNN(6, 3, hidden=(16,), dt=10.0)
    x, lengths, y = (torch.rand(10, 4, 6) < 0.3).float(), torch.full((4,), 10), torch.tensor([0, 1, 2, 0])
    kd = KD(teacher, temperature=2.0, alpha=0.7)
    trainer = Trainer(student, [], None, None, progress=False, device="cpu")
    logits = student(x, lengths)
    ce = torch.nn.functional.cross_entropy(logits, y)
    p_t = torch.softmax(teacher(x, lengths) / 2, 1)
    manual = 0.3 * ce + 0.7 * 4 * (p_t * (p_t.log() - torch.log_softmax(logits / 2, 1))).sum(1).mean()
    assert kd.loss(trainer, logits, y, x, lengths, ce).item() == pytest.approx(manual.item(), rel=1e-5)
    assert not any(p.requires_grad for p in teacher.parameters())
    only_kd = KD(teacher, temperature=2.0, alpha=1.0)
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    first = None
    for _ in range(30):
        loss = only_kd.loss(trainer, student(x, lengths), y, x, lengths, torch.tensor(0.0))
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_ann_teacher_then_kd_student_through_the_cli(tiny_folder, tmp_path):
    def train(out, *extra):
        r = subprocess.run([sys.executable, "-m", "spiketrum.app", "train", "--dataset", "folder", "--data",
                            str(tiny_folder), "-o", str(out), "--epochs", "2", "--rate", "500", "--batch-size", "8",
                            "--augment", "none", "-q", *map(str, extra)], capture_output=True, text=True)
        return r

    teacher = tmp_path / "ann"
    assert train(teacher, "--model", "ann").returncode == 0
    student = tmp_path / "kd"
    r = train(student, "--hidden", 24, "--distill", "kd", "--teacher", teacher, "--kd-alpha", 0.8)
    assert r.returncode == 0, r.stderr
    m = json.loads((student / "metrics.json").read_text())
    assert m["options"] == [{"method": "kd", "teacher": str(teacher), "temperature": 4.0, "alpha": 0.8}]
    r = train(tmp_path / "la", "--hidden", 24, "--distill", "lasnn", "--teacher", teacher, "--distill-schedule", "single")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "la" / "metrics.json").read_text())["options"][0]["method"] == "lasnn"
    other = train(tmp_path / "x", "--hidden", 24, "--rate", 800, "--distill", "kd", "--teacher", teacher)
    assert other.returncode == 2 and "another encoding" in other.stderr and len(other.stderr.strip().splitlines()) == 1
    assert train(tmp_path / "y", "--teacher", teacher).returncode == 2


def test_attention_transfer_is_zero_for_equal_features_and_ignores_scale():
    from snn.distill import at_loss

    f = torch.rand(12, 3, 7)
    assert at_loss(f, f).item() == pytest.approx(0.0, abs=1e-9)
    assert at_loss(5.0 * f, f).item() == pytest.approx(0.0, abs=1e-9)
    assert at_loss(f, torch.rand(12, 3, 4)).item() > 1e-4  # other features, other widths
    lengths = torch.tensor([12, 6, 3])
    g = f.clone()
    g[6:, 1] = 100.0  # padding never counts
    g[3:, 2] = 100.0
    assert at_loss(g, f, lengths).item() == pytest.approx(0.0, abs=1e-9)


def test_lasnn_trains_one_layer_after_another_then_everything():
    from snn.distill import LaSNN
    from snn.trainer import TrainConfig

    torch.manual_seed(0)
    teacher, student = ANN(6, 3, hidden=(8, 8), dt=10.0), SRNN(6, 3, hidden=(16, 16), dt=10.0)
    x, lengths, y = (torch.rand(10, 4, 6) < 0.3).float(), torch.full((4,), 10), torch.tensor([0, 1, 2, 0])
    la = LaSNN(teacher, beta=10.0, stage_fraction=0.5)
    trainer = Trainer(student, list(range(40)), None, None, TrainConfig(epochs=4, batch_size=4), progress=False,
                      device="cpu")
    la.on_train_begin(trainer)
    grads = []
    for step in (0, 15, 25):  # 10 steps an epoch: layer 0 until step 10, layer 1 until 20, then all
        trainer.step = step
        student.zero_grad()
        la.loss(trainer, student(x, lengths), y, x, lengths, torch.nn.functional.cross_entropy(student(x, lengths), y)).backward()
        grads.append({n: (p.grad is not None and bool(p.grad.abs().sum() > 0)) for n, p in student.named_parameters()})
    assert [la.stage(trainer) for trainer.step in (0, 9, 10, 19, 20)] == [0, 0, 1, 1, None]
    assert grads[0]["linears.0.weight"] and not grads[0]["linears.1.weight"] and not grads[0]["readout.linear.weight"]
    assert grads[1]["linears.1.weight"] and not grads[1]["readout.linear.weight"]
    assert all(grads[2].values())  # the joint stage trains everything


def test_virtual_teacher_puts_its_mass_on_the_true_class():
    from snn.distill import virtual_logits

    y = torch.tensor([2, 0])
    p = virtual_logits(y, 4, correct=0.85).exp()
    assert torch.allclose(p.sum(1), torch.ones(2))
    assert p[0, 2] == pytest.approx(0.85) and p[1, 0] == pytest.approx(0.85) and p[0, 1] == pytest.approx(0.05)
    kd = KD(None, temperature=1.0, alpha=1.0)
    assert kd.settings()["teacher"] == "virtual"
    trainer = Trainer(SRNN(3, 4, hidden=(4,), dt=10.0), [], None, None, progress=False, device="cpu")
    zero = kd.loss(trainer, virtual_logits(y, 4) + 5.0, y, None, None, torch.tensor(0.0))
    assert float(zero) == pytest.approx(0.0, abs=1e-6)  # the student that equals the virtual teacher
    assert float(kd.loss(trainer, torch.zeros(2, 4), y, None, None, torch.tensor(0.0))) > 0.1
    # by default the virtual teacher is not softened again: KL(p_vt || softmax(student)) at temperature 1
    student = torch.randn(2, 4)
    target = virtual_logits(y, 4).exp()
    by_hand = (target * (target.log() - student.log_softmax(1))).sum(1).mean()
    assert float(KD(None, alpha=1.0).loss(trainer, student, y, None, None, torch.tensor(0.0))) == pytest.approx(float(by_hand), rel=1e-5)
    with pytest.raises(ValueError):
        KD(None, feature_beta=1.0)


def _batch(seed=0):
    torch.manual_seed(seed)
    return (torch.rand(12, 4, 6) < 0.3).float(), torch.tensor([12, 10, 8, 12]), torch.tensor([0, 1, 2, 0])


def test_feature_kd_trains_adapters_that_map_student_rates_to_teacher_features():
    x, lengths, y = _batch()
    teacher, student = ANN(6, 3, hidden=8, dt=10.0), SRNN(6, 3, hidden=(16,), threshold=0.3, dt=10.0)
    kd = KD(teacher, alpha=0.0, feature_beta=1.0)
    trainer = Trainer(student, [], None, None, progress=False, device="cpu")
    kd.on_train_begin(trainer)
    opt = torch.optim.Adam(student.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = kd.loss(trainer, student(x, lengths), y, x, lengths, torch.tensor(0.0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        kd.on_step_end(trainer)
        losses.append(float(loss.detach()))
    assert kd.adapters[0].in_features == 16 and kd.adapters[0].out_features == 8
    assert losses[-1] < 0.3 * losses[0]
    restored = KD(teacher, alpha=0.0, feature_beta=1.0)
    restored.load_state_dict(kd.state_dict())
    restored.on_train_begin(trainer)
    restored.loss(trainer, student(x, lengths), y, x, lengths, torch.tensor(0.0))
    assert all(torch.equal(a, b) for a, b in zip(restored.adapters.state_dict().values(), kd.adapters.state_dict().values()))


def test_an_online_teacher_learns_from_its_own_loss_only():
    x, lengths, y = _batch(1)
    teacher, student = ANN(6, 3, hidden=8, dt=10.0), SRNN(6, 3, hidden=(16,), dt=10.0)
    kd = KD(teacher, alpha=0.5, online=True)
    trainer = Trainer(student, [], None, None, progress=False, device="cpu")
    kd.on_train_begin(trainer)
    before = [p.detach().clone() for p in teacher.parameters()]
    loss = kd.loss(trainer, student(x, lengths), y, x, lengths, torch.tensor(0.0, requires_grad=True))
    loss.backward()
    got = [p.grad.clone() for p in teacher.parameters()]
    teacher.zero_grad()
    torch.nn.functional.cross_entropy(teacher(x, lengths), y).backward()
    assert all(torch.allclose(a, p.grad, atol=1e-7) for a, p in zip(got, teacher.parameters()))
    teacher.zero_grad()
    for p, g in zip(teacher.parameters(), got):
        p.grad = g
    kd.on_step_end(trainer)
    assert any(not torch.equal(b, p) for b, p in zip(before, teacher.parameters()))
    again = KD(ANN(6, 3, hidden=8, dt=10.0), online=True)
    again.load_state_dict(kd.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(again.teacher.parameters(), teacher.parameters()))


def test_virtual_and_online_teachers_through_the_cli(tiny_folder, tmp_path):
    def train(out, *extra):
        return subprocess.run([sys.executable, "-m", "spiketrum.app", "train", "--dataset", "folder", "--data",
                               str(tiny_folder), "-o", str(out), "--epochs", "1", "--rate", "500", "--batch-size", "8",
                               "--hidden", "16", "--augment", "none", "-q", *map(str, extra)], capture_output=True, text=True)

    for teacher, expect in (("virtual", {"teacher": "virtual"}), ("ann", {"teacher": "ann", "online": True})):
        r = train(tmp_path / teacher, "--distill", "kd", "--teacher", teacher, "--kd-feature-beta",
                  1.0 if teacher == "ann" else 0.0)
        assert r.returncode == 0, r.stderr
        opts = json.loads((tmp_path / teacher / "metrics.json").read_text())["options"][0]
        assert expect.items() <= opts.items()
    bad = train(tmp_path / "bad", "--distill", "lasnn", "--teacher", "virtual")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
