"""Energy per inference: SynOps, MACs and neuron-state updates against hand counts on tiny models."""
import pytest
import torch

from snn.models import ANN, PJ_PER_AC, PJ_PER_MAC, SCBAMSNN, SRNN, ConvSNN, energy, record_activity

# Two clips of 6 steps of 4 channels; the second is 3 steps long and its padding holds spikes that must not count.
X = torch.zeros(6, 2, 4)
X[0, 0, 0], X[1, 0, 1], X[2, 0, 0], X[2, 0, 3], X[5, 0, 2] = 1, 2, 1, 1, 1
X[0, 1, 3], X[2, 1, 0], X[3, 1, 1], X[4, 1, 0] = 1, 1, 1, 3
LENGTHS = torch.tensor([6, 3])
VALID_STEPS = 9


def _pruned_srnn():
    """RLIF layer of 5 whose spikes are known: neuron j < 4 fires exactly when input j has a spike, neuron 4 when
    input 0 has (current 10 per spike, reset to zero, tiny recurrent weights), with pruned synapses everywhere."""
    model = SRNN(4, 3, hidden=(5,), adaptive=False, reset="zero", dt=10.0)
    with torch.no_grad():
        w = torch.zeros(5, 4)
        w[torch.arange(4), torch.arange(4)] = 10.0
        w[4, 0] = 10.0  # input 0 drives 2 synapses, the others 1
        model.linears[0].weight.copy_(w)
        model.linears[0].bias.zero_()
        model.neurons[0].weight.fill_(0.01).fill_diagonal_(0.0)  # recurrent: 4 synapses per neuron
        r = torch.ones(3, 5)
        r[:, 1] = 0.0  # neuron 1 drives no readout synapse
        r[0, 2] = 0.0  # neuron 2 drives 2
        model.readout.linear.weight.copy_(r)
    return model


def test_srnn_synops_and_state_updates_match_a_hand_count():
    model = _pruned_srnn()
    seen = []
    model.neurons[0].register_forward_hook(lambda m, i, out: seen.append(out[0]))
    with record_activity(model) as act:
        model(X, LENGTHS)
    hidden = seen[0]
    want = torch.zeros(6, 2, 5)
    want[..., :4] = (X > 0).float()
    want[..., 4] = (X[..., 0] > 0).float()
    assert torch.equal(hidden, want)  # the construction fires as designed
    s = act.summary()
    # input: valid spikes x synapses present, [2, 1, 1, 1]: clip 0 2*2 + 2 + 1 + 1 = 8, clip 1 1 + 1*2 = 3
    assert s["layers"]["input"]["synops_per_sample"] == 11 / 2
    # hidden: fan-out = readout [3, 0, 2, 3, 3] + recurrent 4; clip 0 spikes [2, 1, 1, 1, 2] -> 45, clip 1 [1, 0, 0, 1, 1] -> 21
    assert s["layers"]["hidden0"]["spikes_per_sample"] == 10 / 2
    assert s["layers"]["hidden0"]["synops_per_sample"] == 66 / 2
    assert s["synops_per_sample"] == 77 / 2
    # state: 5 LIF membranes + 3 readout integrators, one decay each per valid step; no MACs
    assert s["layers"]["hidden0"]["state_updates_per_sample"] == 5 * VALID_STEPS / 2
    assert s["layers"]["readout"]["state_updates_per_sample"] == 3 * VALID_STEPS / 2
    assert s["state_updates_per_sample"] == 8 * VALID_STEPS / 2 and s["macs_per_sample"] == 0
    e = act.energy()
    assert e["samples"] == 2 and e["synops"] == 38.5 and e["state_updates"] == 36
    assert e["uj"] == pytest.approx(38.5 * 0.9e-6, rel=1e-12)
    assert e["state_uj"] == pytest.approx(36 * 4.6e-6, rel=1e-12)


def test_adaptive_neurons_count_three_state_updates():
    model = SRNN(4, 3, hidden=(5, 2), adaptive=True, dt=10.0)
    with record_activity(model) as act:
        model(X, LENGTHS)
    s = act.summary()
    assert s["state_updates_per_sample"] == (3 * (5 + 2) + 3) * VALID_STEPS / 2


def test_ann_macs_from_its_shapes_valid_steps_and_weights_present():
    model = ANN(4, 3, hidden=(5, 2), dt=10.0)
    with torch.no_grad():
        model.grus[0].weight_ih_l0[0].zero_()  # 4 pruned input weights
    with record_activity(model) as act:
        model(X, LENGTHS)
    per_step = (3 * 5 * 4 - 4 + 3 * 5 * 5) + (3 * 2 * 5 + 3 * 2 * 2) + 2 * 3  # GRU 1, GRU 2, readout
    s = act.summary()
    assert per_step == 179 and s["macs_per_sample"] == per_step * VALID_STEPS / 2
    assert s["layers"]["gru0"]["macs_per_sample"] == 131 * VALID_STEPS / 2
    assert s["state_updates_per_sample"] == 3 * (5 + 2) * VALID_STEPS / 2
    assert s["synops_per_sample"] == 0 and "rate" not in s["layers"]["gru0"]
    e = act.energy()
    assert e["uj"] == pytest.approx(179 * 4.5 * 4.6e-6, rel=1e-12)
    with record_activity(model) as act:  # streaming: every step counts
        model.steps(X)
    assert act.summary()["macs_per_sample"] == 179 * 6


def test_conv_snn_state_updates_count_every_position():
    model = ConvSNN(12, 3, channels=(4,), kernel_size=3, stride=1, hidden=5, adaptive=True, dt=10.0)
    x = torch.zeros(6, 2, 12)
    x[:, :, ::5] = 1.0
    with record_activity(model) as act:
        model(x, LENGTHS)
    s = act.summary()
    # 4 maps x 2 positions and 5 hidden ALIF (3 each), 3 readout integrators (1 each), per valid step
    assert s["state_updates_per_sample"] == (3 * 4 * 2 + 3 * 5 + 3) * VALID_STEPS / 2
    assert s["macs_per_sample"] == 0


def test_scbam_attention_macs_and_cell_updates():
    model = SCBAMSNN(60, 3, maps=(8,), kernel_size=5, stride=2, attention="cbam", reduction=4, attention_kernel=7,
                     dt=10.0)
    x = torch.zeros(6, 2, 60)
    x[:, :, ::7] = 1.0
    with record_activity(model) as act:
        model(x, LENGTHS)
    cells = 8 * 5  # 10 kernels -> 5 bins
    # channel MLP 8->2->8 on mean and max (2 x 32), f * M_c (40), frequency conv 2 maps x 23 window taps, * M_s (40)
    assert model.cells[0].attention_macs(5) == 64 + 40 + 46 + 40
    s = act.summary()
    assert s["layers"]["cell0"]["macs_per_sample"] == 190 * VALID_STEPS / 2
    assert s["state_updates_per_sample"] == (3 * cells + 3) * VALID_STEPS / 2


def test_energy_convention():
    assert (PJ_PER_AC, PJ_PER_MAC) == (0.9, 4.6)
    e = energy(synops=2e6, macs=5e5, state_updates=1e5)
    assert e["uj"] == pytest.approx(2 * 0.9 + 0.5 * 4.6)
    assert e["uj_with_state"] == pytest.approx(e["uj"] + 0.1 * 4.6)
    assert "Horowitz" in e["convention"]


def test_encoder_operations_count_the_pursuit_of_real_spikes(monkeypatch):
    """Exact mode keeps every nonzero cross-correlation term, so a spike of kernel k updates the L_k + L_m - 1 lags
    where it overlaps kernel m (less the end terms, exact zeros as a gammatone starts at 0), plus L_k residual
    samples; and the map is computed once per chunk (no resyncs), as the estimate says."""
    import numpy as np

    import spiketrum.encoder as enc

    cfg = enc.SpiketrumConfig(sr=8000, rate=400, kernels=6, levels=1, fmin=200.0, mode="exact")
    maps = []
    real_map = enc._correlation_map
    monkeypatch.setattr(enc, "_correlation_map", lambda r, phi, T, *a, **k: maps.append(T) or real_map(r, phi, T, *a, **k))
    x = np.random.default_rng(0).standard_normal(4000)
    st = cfg.encode(x, 8000)
    assert maps == [4000] and len(st) == 200
    lengths = enc.dictionary(8000, 6, 200.0, cfg.resolved_fmax, cfg.floor_db)[1]
    per_spike = [sum(int(lengths[k]) + int(lm) - 1 for lm in lengths) + int(lengths[k]) for k in st.kernel]
    ops = cfg.operations(spikes=st)
    assert ops["spikes"] == 400.0
    counted = ops["pursuit_macs"] * 0.5  # 0.5 s of audio
    assert sum(per_spike) - 2 * 6 * len(st) <= counted <= sum(per_spike)
    assert ops["per_spike_macs"] == pytest.approx(counted / len(st), rel=1e-12)
    assert ops["ops"] > ops["fft_flops"] > 0 and ops["compares"] > 0
