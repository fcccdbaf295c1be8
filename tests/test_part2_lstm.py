"""The hand-written LSTM of part 2: shapes, initialisation, parity with torch.nn.LSTM, the hand-written backward."""

from __future__ import annotations

import inspect
import io
import math
import tokenize

import pytest
import torch

import part2.lstm_function as lstm_function
from part2.lstm_function import GATE_ORDER, LSTMSequence, lstm_sequence_reference
from part2.model import LSTM

pytestmark = pytest.mark.usefixtures("torch_one_thread")


def copy_into_torch_lstm(lstm: LSTM) -> torch.nn.LSTM:
    """A ``torch.nn.LSTM`` with the weights of ``lstm`` (gate order i, f, g, o; the bias all in ``bias_ih``)."""
    reference = torch.nn.LSTM(lstm.embed_dim, lstm.hidden_dim).to(lstm.weight_x.dtype)
    with torch.no_grad():
        for ours, theirs in (
            (lstm.weight_x, reference.weight_ih_l0),
            (lstm.weight_h, reference.weight_hh_l0),
            (lstm.bias, reference.bias_ih_l0),
        ):
            theirs.copy_(torch.cat([lstm.gate_slice(ours, gate) for gate in "ifgo"]))
        reference.bias_hh_l0.zero_()
    return reference


@pytest.mark.parametrize("T,B", [(1, 1), (7, 3), (13, 5)])
def test_shapes_for_variable_length_and_batch(T: int, B: int) -> None:
    lstm = LSTM(12, 5)
    x = torch.randn(T, B, 5)
    assert lstm(x).shape == (T, B, 12)
    outputs, (h, c) = lstm(x, return_state=True)
    assert outputs.shape == (T, B, 12) and h.shape == (B, 12) and c.shape == (B, 12)
    assert torch.equal(outputs[-1], h)


def test_initialisation_bounds_and_forget_bias() -> None:
    torch.manual_seed(0)
    H = 64
    lstm = LSTM(H, 16)
    bound = 1 / math.sqrt(H)
    assert lstm.weight_x.shape == (4 * H, 16) and lstm.weight_h.shape == (4 * H, H) and lstm.bias.shape == (4 * H,)
    for weight in (lstm.weight_x, lstm.weight_h):
        assert weight.abs().max() <= bound
        assert weight.abs().max() > 0.9 * bound  # uniform over the whole interval, not a narrower one
    for gate in GATE_ORDER:
        b = lstm.gate_slice(lstm.bias, gate)
        shift = 1.0 if gate == "f" else 0.0
        assert (b - shift).abs().max() <= bound
        assert abs((b - shift).mean()) < 0.5 * bound
    assert lstm.gate_slice(lstm.bias, "f").min() >= 1 - bound


def _code_names(source: str) -> list[str]:
    """The names in the code (strings and comments dropped)."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return [tok.string for tok in tokens if tok.type == tokenize.NAME]


def test_no_forbidden_modules() -> None:
    lstm = LSTM(8, 4)
    assert list(lstm.children()) == []
    assert all(isinstance(p, torch.nn.Parameter) for p in lstm.parameters())
    names = _code_names(inspect.getsource(LSTM) + inspect.getsource(lstm_function))
    assert {"weight_h", "addmm", "sigmoid"} <= set(names)  # the filter keeps the code
    forbidden = {"Linear", "linear", "LSTMCell", "lstm", "lstm_cell", "_VF", "RNN", "RNNBase", "mkldnn_rnn"}
    assert not set(names) & forbidden
    # ``LSTM`` itself is the class name; ``nn.LSTM`` / ``torch.LSTM`` would be the module.
    assert not [pair for pair in zip(names, names[1:]) if pair[1] == "LSTM" and pair[0] in ("nn", "torch")]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_parity_with_torch_lstm(dtype: torch.dtype, tol: float) -> None:
    torch.manual_seed(1)
    T, B, E, H = 9, 4, 6, 10
    lstm = LSTM(H, E).to(dtype)
    reference = copy_into_torch_lstm(lstm)
    x = torch.randn(T, B, E, dtype=dtype, requires_grad=True)
    h0 = torch.randn(B, H, dtype=dtype, requires_grad=True)
    c0 = torch.randn(B, H, dtype=dtype, requires_grad=True)
    outputs, (h, c) = lstm(x, (h0, c0), return_state=True)
    ref_outputs, (ref_h, ref_c) = reference(x, (h0.unsqueeze(0), c0.unsqueeze(0)))
    torch.testing.assert_close(outputs, ref_outputs, atol=tol, rtol=0)
    torch.testing.assert_close(h, ref_h[0], atol=tol, rtol=0)
    torch.testing.assert_close(c, ref_c[0], atol=tol, rtol=0)

    weights = torch.randn(T, B, H, dtype=dtype)
    ours = torch.autograd.grad(
        (outputs * weights).sum() + (h * c).sum(), [x, h0, c0, lstm.weight_x, lstm.weight_h, lstm.bias]
    )
    theirs = torch.autograd.grad(
        (ref_outputs * weights).sum() + (ref_h * ref_c).sum(),
        [x, h0, c0, reference.weight_ih_l0, reference.weight_hh_l0, reference.bias_ih_l0],
    )
    for grad, ref_grad in zip(ours[:3], theirs[:3]):
        torch.testing.assert_close(grad, ref_grad, atol=tol, rtol=0)
    for grad, ref_grad in zip(ours[3:], theirs[3:]):
        torch.testing.assert_close(
            torch.cat([lstm.gate_slice(grad, gate) for gate in "ifgo"]), ref_grad, atol=tol, rtol=0
        )


def _random_inputs(T: int, B: int, E: int, H: int) -> list[torch.Tensor]:
    shapes = [(T, B, E), (B, H), (B, H), (4 * H, E), (4 * H, H), (4 * H,)]
    return [torch.randn(*shape, dtype=torch.float64, requires_grad=True) for shape in shapes]


def test_gradcheck_hand_written_backward() -> None:
    torch.manual_seed(2)
    inputs = _random_inputs(5, 3, 4, 3)
    assert torch.autograd.gradcheck(LSTMSequence.apply, inputs)
    # Only the outputs used (no gradient reaches the final state) and only the final state used.
    assert torch.autograd.gradcheck(lambda *args: LSTMSequence.apply(*args)[0], inputs)
    assert torch.autograd.gradcheck(lambda *args: LSTMSequence.apply(*args)[2], inputs)


def test_hand_written_backward_matches_autograd_reference() -> None:
    torch.manual_seed(3)
    inputs = _random_inputs(6, 2, 3, 5)
    ours = LSTMSequence.apply(*inputs)
    ref = lstm_sequence_reference(*inputs)
    weights = [torch.randn_like(t) for t in ours]
    grads = torch.autograd.grad(sum((o * w).sum() for o, w in zip(ours, weights)), inputs)
    ref_grads = torch.autograd.grad(sum((o * w).sum() for o, w in zip(ref, weights)), inputs)
    for a, b in zip(ours + grads, ref + ref_grads):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("zero_state", [False, True])
def test_a_second_backward_pass_gives_the_same_gradients(zero_state: bool) -> None:
    """The backward pass overwrites the saved gates with their gradients; retain_graph=True must still work."""
    torch.manual_seed(4)
    inputs = _random_inputs(4, 2, 3, 5)
    if zero_state:
        inputs[1] = torch.zeros(2, 5, dtype=torch.float64, requires_grad=True)
    outputs, h, c = LSTMSequence.apply(*inputs, zero_state)
    loss = (outputs * torch.randn_like(outputs)).sum() + h.sum() + (c * c).sum()
    first = torch.autograd.grad(loss, inputs, retain_graph=True, allow_unused=True)
    second = torch.autograd.grad(loss, inputs, allow_unused=True)
    for a, b in zip(first, second):
        assert (a is None) == (b is None) and (a is None or torch.equal(a, b))


def test_gate_buffer_handed_on_only_after_backward() -> None:
    """A backward pass hands its gate buffer to the next forward pass; graphs alive together never share one."""
    torch.manual_seed(6)
    sequences = [_random_inputs(4, 2, 3, 5) for _ in range(4)]
    weights = [torch.randn(4, 2, 5, dtype=torch.float64) for _ in sequences]

    def forward(k: int) -> tuple[torch.Tensor, object]:
        """The loss of sequence k and its LSTMSequence node (the ctx, which holds the gate buffer)."""
        outputs = LSTMSequence.apply(*sequences[k])[0]
        return (outputs * weights[k]).sum(), outputs.grad_fn

    def check_gradients(k: int, loss: torch.Tensor) -> None:
        reference = (lstm_sequence_reference(*sequences[k])[0] * weights[k]).sum()
        for a, b in zip(torch.autograd.grad(loss, sequences[k]), torch.autograd.grad(reference, sequences[k])):
            torch.testing.assert_close(a, b, atol=1e-12, rtol=0)

    loss_0, node_0 = forward(0)
    first_buffer = node_0.gates.data_ptr()
    check_gradients(0, loss_0)
    # Both alive: the first takes the buffer handed on by sequence 0, the second a new one.
    (loss_1, node_1), (loss_2, node_2) = forward(1), forward(2)
    assert node_1.gates.data_ptr() == first_buffer != node_2.gates.data_ptr()
    check_gradients(2, loss_2)
    loss_3, _ = forward(3)  # takes the buffer of sequence 2, while sequence 1 still needs its own
    check_gradients(1, loss_1)
    check_gradients(3, loss_3)


def test_state_carrying_equals_one_long_sequence() -> None:
    torch.manual_seed(4)
    lstm = LSTM(7, 3)
    x = torch.randn(10, 2, 3)
    full = lstm(x)
    first, state = lstm(x[:4], return_state=True)
    second = lstm(x[4:], state)
    torch.testing.assert_close(torch.cat([first, second]), full, atol=1e-6, rtol=0)


@pytest.fixture(params=["onednn-packed", "mm"])
def product_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with the per-step products on packed oneDNN weights (even for short sequences) and on plain mm."""
    if request.param == "onednn-packed":
        if not lstm_function.onednn_packing_usable(torch.empty(4, 4), steps=10**6):
            pytest.skip("oneDNN weight packing is not available in this torch build")
        monkeypatch.setattr(lstm_function, "PACKING_MIN_STEPS", 1)
    else:
        monkeypatch.setattr(lstm_function, "USE_ONEDNN_PACKING", False)
    return request.param


def _outputs_and_grads(lstm: torch.nn.Module, x: torch.Tensor, state, reference: bool = False) -> list[torch.Tensor]:
    if reference:
        outputs, (h, c) = lstm(x, (state[0].unsqueeze(0), state[1].unsqueeze(0)))
        h, c = h[0], c[0]
        params = [lstm.weight_ih_l0, lstm.weight_hh_l0, lstm.bias_ih_l0]
    else:
        outputs, (h, c) = lstm(x, state, return_state=True)
        params = [lstm.weight_x, lstm.weight_h, lstm.bias]
    grads = torch.autograd.grad(outputs.float().square().sum() + c.float().sum(), [x, *params])
    if not reference:  # our gate order (i, f, o, g) to torch's (i, f, g, o)
        grads = list(grads[:1]) + [torch.cat([lstm.gate_slice(g, gate) for gate in "ifgo"]) for g in grads[1:]]
    return [outputs.float(), h.float(), c.float(), *grads]


@pytest.mark.parametrize("T", [3, 12])
def test_float32_parity_on_both_product_paths(product_path: str, T: int) -> None:
    torch.manual_seed(5)
    lstm = LSTM(16, 8)
    reference = copy_into_torch_lstm(lstm)
    x = torch.randn(T, 3, 8, requires_grad=True)
    state = (torch.randn(3, 16), torch.randn(3, 16))
    for ours, theirs in zip(_outputs_and_grads(lstm, x, state), _outputs_and_grads(reference, x, state, True)):
        torch.testing.assert_close(ours, theirs, atol=2e-5, rtol=1e-5)


# bf16 keeps 8 bits of mantissa: a relative error of 2**-8 = 0.4 % per rounding. Our products round their
# inputs to bf16 and keep gates and cell state in float32; torch's bf16 LSTM rounds more. Both are compared
# with the float32 result, relative to the largest value of each tensor.
BF16_RELATIVE_TOLERANCE = 0.03


def test_bfloat16_autocast_parity_with_torch_lstm(product_path: str) -> None:
    torch.manual_seed(7)
    T, B, E, H = 20, 8, 32, 64
    lstm = LSTM(H, E)
    reference = copy_into_torch_lstm(lstm)
    x = torch.randn(T, B, E, requires_grad=True)
    state = (torch.zeros(B, H), torch.zeros(B, H))
    exact = _outputs_and_grads(lstm, x, state)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = _outputs_and_grads(lstm, x, None and state)
        theirs = _outputs_and_grads(reference, x, state, reference=True)
    assert all(p.dtype == torch.float32 for p in lstm.parameters())
    for name, a, b, ref in zip(["out", "h", "c", "dx", "dWx", "dWh", "db"], ours, theirs, exact):
        scale = ref.abs().max()
        assert (a - ref).abs().max() / scale < BF16_RELATIVE_TOLERANCE, name
        assert (b - ref).abs().max() / scale < BF16_RELATIVE_TOLERANCE, name
        assert (a - ref).abs().max() > 0, name  # the products really ran in bf16


def test_autocast_runs_products_in_bfloat16_and_returns_float32_grads(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    real_mm = torch.mm
    monkeypatch.setattr(lstm_function, "USE_ONEDNN_PACKING", False)
    monkeypatch.setattr(torch, "mm", lambda a, b: seen.append((a.dtype, b.dtype)) or real_mm(a, b))
    lstm = LSTM(8, 4)
    x = torch.randn(5, 2, 4, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = lstm(x)
    outputs.sum().backward()
    assert seen and all(pair == (torch.bfloat16, torch.bfloat16) for pair in seen)
    assert outputs.dtype == torch.float32 and x.grad.dtype == torch.float32
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in lstm.parameters())


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 4e-7), (torch.float64, 1e-15)])
def test_tanh_through_sigmoid_matches_torch_tanh(dtype: torch.dtype, tol: float) -> None:
    x = torch.linspace(-30, 30, 20001, dtype=dtype)
    out = torch.empty_like(x)
    assert lstm_function._tanh(x, out=out) is out
    torch.testing.assert_close(out, torch.tanh(x), atol=tol, rtol=0)
