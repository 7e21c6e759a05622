"""Row-sparse tables and optimisers: only touched rows move; lazy Adam matches dense Adam on them."""

from __future__ import annotations

import pytest
import torch

from model.optim import LazyAdam, RowAdagrad, SparseEmbedding, make_sparse_optimizer, put_rows, take_rows


def _step(opt_cls: type, rows: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    table = SparseEmbedding(torch.randn(6, 3))
    before = table.weight.clone()
    opt = opt_cls({"t": table}, 0.1)
    out = table.gather(torch.tensor(rows))
    (out**2).sum().backward()
    grad = table.take_grad()
    assert grad is not None
    opt.step("t", *grad)
    return before, table.weight


@pytest.mark.parametrize("opt_cls", [LazyAdam, RowAdagrad])
def test_only_touched_rows_change(opt_cls: type) -> None:
    before, after = _step(opt_cls, [1, 4, 1])
    changed = (before != after).any(dim=1)
    assert changed.tolist() == [False, True, False, False, True, False]


def test_take_grad_coalesces_repeated_rows() -> None:
    table = SparseEmbedding(torch.ones(4, 2))
    a = table.gather(torch.tensor([2, 0]))
    b = table.gather(torch.tensor([2]))
    (a.sum() + 3 * b.sum()).backward()
    rows, grad = table.take_grad()  # type: ignore[misc]
    assert rows.tolist() == [0, 2]
    assert grad.tolist() == [[1.0, 1.0], [4.0, 4.0]]
    assert table.take_grad() is None


def test_lazy_adam_equals_dense_adam_on_rows_touched_every_step() -> None:
    torch.manual_seed(0)
    init = torch.randn(3, 2)
    table = SparseEmbedding(init)
    lazy = LazyAdam({"t": table}, 0.05)
    dense = torch.nn.Parameter(init.clone())
    adam = torch.optim.Adam([dense], lr=0.05)
    target = torch.randn(3, 2)
    for _ in range(5):
        out = table.gather(torch.arange(3))
        ((out - target) ** 2).sum().backward()
        lazy.step("t", *table.take_grad())  # type: ignore[misc]
        adam.zero_grad()
        ((dense - target) ** 2).sum().backward()
        adam.step()
    assert torch.allclose(table.weight, dense.detach(), atol=1e-5)


def test_optimizer_state_round_trip() -> None:
    table = SparseEmbedding(torch.zeros(2, 2))
    opt = LazyAdam({"t": table}, 0.1)
    opt.step("t", torch.tensor([1]), torch.ones(1, 2))
    state = opt.state_dict()
    fresh = LazyAdam({"t": SparseEmbedding(torch.zeros(2, 2))}, 0.1)
    fresh.load_state_dict(state)
    assert torch.equal(fresh.state["t"]["m"], opt.state["t"]["m"])
    assert fresh.state["t"]["t"].tolist() == [0.0, 1.0]


def test_unknown_optimizer_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="lazy_adam, row_adagrad"):
        make_sparse_optimizer("sgd", {}, 0.1)


@pytest.mark.parametrize("num_rows", [8, 1000])  # mark-and-scan unique, and the sorting one beyond 16x
def test_unique_rows_matches_torch_unique_and_leaves_scratch_clean(num_rows: int) -> None:
    table = SparseEmbedding(torch.zeros(num_rows, 2))
    for rows in (torch.tensor([5, 1, 5, 0, 7, 1]), torch.tensor([3]), torch.tensor([7, 6, 7])):
        unique, inverse = table.unique_rows(rows)
        want_u, want_i = torch.unique(rows, return_inverse=True)
        assert unique.tolist() == want_u.tolist() and inverse.tolist() == want_i.tolist()
        assert torch.equal(unique[inverse], rows)
        if table._mark is not None:
            assert not table._mark.any()


@pytest.mark.parametrize("threads", [1, 2])  # numpy path on one thread, torch's index ops beyond
def test_take_and_put_rows(threads: int) -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        table = torch.arange(12.0).reshape(4, 3)
        got = take_rows(table, torch.tensor([3, 0, 3]))
        assert got.tolist() == [[9, 10, 11], [0, 1, 2], [9, 10, 11]]
        got[0, 0] = 100.0  # a copy, not a view of the table
        assert table[3, 0] == 9.0
        put_rows(table, torch.tensor([2, 0]), torch.tensor([[-1.0, -1, -1], [-2, -2, -2]]))
        assert table[:, 0].tolist() == [-2.0, 3.0, -1.0, 9.0]
        with pytest.raises(IndexError):
            take_rows(table, torch.tensor([-1]))
        with pytest.raises(IndexError):
            take_rows(table, torch.tensor([4]))
    finally:
        torch.set_num_threads(before)


def test_gather_gradients_are_summed_per_row_across_gathers() -> None:
    table = SparseEmbedding(torch.zeros(5, 1))
    a, b = table.gather(torch.tensor([4, 1, 4])), table.gather(torch.tensor([1, 3]))
    (a * torch.tensor([[1.0], [2.0], [3.0]])).sum().backward(retain_graph=True)
    (10 * b).sum().backward()
    rows, grad = table.take_grad()  # type: ignore[misc]
    assert rows.tolist() == [1, 3, 4] and grad.flatten().tolist() == [12.0, 10.0, 4.0]


def test_lazy_adam_first_step_of_a_row_moves_it_by_lr_times_the_sign() -> None:
    """At a row's first step the bias-corrected moments are g and g^2: w -= lr * g / (|g| + eps),
    whatever the step count of other rows (row 0 is first touched at the second step)."""
    table = SparseEmbedding(torch.zeros(3, 2))
    opt = LazyAdam({"t": table}, 0.1)
    opt.step("t", torch.tensor([1]), torch.tensor([[2.0, -0.5]]))
    opt.step("t", torch.tensor([0, 1]), torch.tensor([[-3.0, 1e-3], [2.0, -0.5]]))
    assert table.weight[0].tolist() == pytest.approx(
        [0.1 * 3 / (3 + 1e-8), -0.1 * 1e-3 / (1e-3 + 1e-8)], rel=1e-5
    )
    assert table.weight[1].tolist() == pytest.approx([-0.2, 0.2], rel=1e-5)  # same gradient twice
    assert table.weight[2].tolist() == [0.0, 0.0]
    assert opt.state["t"]["t"].tolist() == [1.0, 2.0, 0.0]
    # Second moment of row 1 after two equal gradients: (1 - b2^2) g^2.
    assert opt.state["t"]["v"][1].tolist() == pytest.approx([4 * (1 - 0.999**2), 0.25 * (1 - 0.999**2)])


@pytest.mark.parametrize(("opt_cls", "state_keys"), [(LazyAdam, ("m", "v", "t")), (RowAdagrad, ("sum",))])
def test_kernel_step_matches_the_torch_ops_over_several_steps(
    opt_cls: type, state_keys: tuple[str, ...]
) -> None:
    """The compiled CPU step (model.kernels) and the torch-op step (other devices) agree, rows revisited."""
    gen = torch.Generator().manual_seed(3)
    start = torch.randn(50, 8, generator=gen)
    kernel, ops = SparseEmbedding(start), SparseEmbedding(start)
    opt_k, opt_t = opt_cls({"t": kernel}, 0.05), opt_cls({"t": ops}, 0.05)
    opt_t.use_kernel = False
    for step in range(4):
        rows = torch.unique(torch.randint(0, 50, (30,), generator=gen))
        grad = torch.randn(len(rows), 8, generator=gen) * (step + 1)
        opt_k.step("t", rows, grad)
        opt_t.step("t", rows, grad)
    assert torch.allclose(kernel.weight, ops.weight, rtol=1e-5, atol=1e-6)
    for key in state_keys:
        assert torch.allclose(opt_k.state["t"][key], opt_t.state["t"][key], rtol=1e-5, atol=1e-7)
    assert not torch.equal(kernel.weight, start)


def test_coalesce_kernel_sums_duplicate_rows_like_index_add() -> None:
    from model.kernels import coalesce_rows

    out = torch.ones(3, 2)
    coalesce_rows(out, torch.tensor([2, 0, 2, 2]), torch.tensor([[1.0, 2], [3, 4], [5, 6], [7, 8]]))
    assert out.tolist() == [[4.0, 5.0], [1.0, 1.0], [14.0, 17.0]]
    with pytest.raises(IndexError, match=r"\[0, 3\)"):
        coalesce_rows(out, torch.tensor([3]), torch.ones(1, 2))
    with pytest.raises(ValueError, match="inverse has 2 rows, grad 1"):
        coalesce_rows(out, torch.tensor([0, 1]), torch.ones(1, 2))


@pytest.mark.parametrize("use_kernel", [True, False])
def test_row_adagrad_steps_by_hand(use_kernel: bool) -> None:
    """G = 0 + mean(g^2) = (9 + 16) / 2 = 12.5 at the first step, then 12.5 + (1 + 1) / 2 = 13.5."""
    table = SparseEmbedding(torch.zeros(3, 2))
    opt = RowAdagrad({"t": table}, 0.5)
    opt.use_kernel = use_kernel
    opt.step("t", torch.tensor([2]), torch.tensor([[3.0, -4.0]]))
    assert table.weight[2].tolist() == pytest.approx([-0.5 * 3 / 12.5**0.5, 0.5 * 4 / 12.5**0.5])
    opt.step("t", torch.tensor([0, 2]), torch.tensor([[2.0, 2.0], [1.0, -1.0]]))
    assert opt.state["t"]["sum"].tolist() == pytest.approx([4.0, 0.0, 13.5])
    assert table.weight[0].tolist() == pytest.approx([-0.5, -0.5])  # 0.5 * 2 / sqrt(4)
    second = [-0.5 * 3 / 12.5**0.5 - 0.5 / 13.5**0.5, 0.5 * 4 / 12.5**0.5 + 0.5 / 13.5**0.5]
    assert table.weight[2].tolist() == pytest.approx(second)
    assert table.weight[1].tolist() == [0.0, 0.0]
