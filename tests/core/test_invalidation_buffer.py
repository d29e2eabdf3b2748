from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cachekit_core.invalidation import InvalidationBuffer


def test_commit_returns_the_tags_and_empties_the_buffer() -> None:
    buf = InvalidationBuffer()
    buf.begin()
    buf.add("products", "products:1")
    buf.add("products")
    assert buf.commit() == {"products", "products:1"}
    assert not buf.active
    assert buf.depth == 0
    buf.begin()  # reusable for the next transaction
    assert buf.commit() == set()


def test_rollback_discards_everything() -> None:
    buf = InvalidationBuffer()
    buf.begin()
    buf.add("a")
    buf.savepoint()
    buf.add("b")
    buf.rollback()
    assert not buf.active
    buf.begin()
    assert buf.commit() == set()


def test_released_savepoint_merges_into_its_parent() -> None:
    buf = InvalidationBuffer()
    buf.begin()
    buf.add("outer")
    buf.savepoint()
    buf.add("inner")
    buf.release_savepoint()
    assert buf.depth == 1
    assert buf.commit() == {"outer", "inner"}


def test_rolled_back_savepoint_discards_only_its_own_tags() -> None:
    buf = InvalidationBuffer()
    buf.begin()
    buf.add("outer")
    buf.savepoint()
    buf.add("kept")
    buf.savepoint()
    buf.add("undone")
    buf.rollback_savepoint()
    buf.release_savepoint()
    assert buf.commit() == {"outer", "kept"}


def test_a_tag_also_added_outside_the_rolled_back_savepoint_survives() -> None:
    buf = InvalidationBuffer()
    buf.begin()
    buf.add("t")
    buf.savepoint()
    buf.add("t")
    buf.rollback_savepoint()
    assert buf.commit() == {"t"}


def test_commit_includes_savepoints_still_open() -> None:
    buf = InvalidationBuffer()
    buf.begin()
    buf.savepoint()
    buf.add("deep")
    assert buf.depth == 2
    assert buf.commit() == {"deep"}


def test_rollback_outside_a_transaction_is_a_no_op() -> None:
    buf = InvalidationBuffer()
    buf.rollback()
    assert not buf.active


def test_pending_shows_every_open_level() -> None:
    buf = InvalidationBuffer()
    assert buf.pending() == frozenset()
    buf.begin()
    buf.add("a")
    buf.savepoint()
    buf.add("b")
    assert buf.pending() == {"a", "b"}
    assert "depth=2" in repr(buf)


@pytest.mark.parametrize(
    "misuse",
    [
        lambda b: b.add("x"),
        lambda b: b.savepoint(),
        lambda b: b.release_savepoint(),
        lambda b: b.rollback_savepoint(),
        lambda b: b.commit(),
    ],
)
def test_structural_misuse_outside_a_transaction_raises(misuse: object) -> None:
    with pytest.raises(RuntimeError):
        misuse(InvalidationBuffer())  # type: ignore[operator]


def test_savepoint_operations_need_an_open_savepoint() -> None:
    buf = InvalidationBuffer()
    buf.begin()
    with pytest.raises(RuntimeError):
        buf.release_savepoint()
    with pytest.raises(RuntimeError):
        buf.rollback_savepoint()
    with pytest.raises(RuntimeError):
        buf.begin()


def test_non_string_tags_are_rejected() -> None:
    buf = InvalidationBuffer()
    buf.begin()
    with pytest.raises(TypeError):
        buf.add(["a", "b"])  # type: ignore[arg-type]


# Model: a program of nested blocks; each block either releases or rolls back. A tag added in
# a block survives the commit iff every block around it was released.
_ops = st.recursive(
    st.sampled_from(["a", "b", "c", "d"]).map(lambda t: ("add", t)),
    lambda inner: st.tuples(st.booleans(), st.lists(inner, max_size=4)).map(lambda x: ("block", x)),
    max_leaves=12,
)


def _run(
    buf: InvalidationBuffer, ops: list[tuple[str, object]], alive: bool, out: set[str]
) -> None:
    for kind, arg in ops:
        if kind == "add":
            assert isinstance(arg, str)
            buf.add(arg)
            if alive:
                out.add(arg)
        else:
            assert isinstance(arg, tuple)
            release, body = arg
            buf.savepoint()
            _run(buf, body, alive and release, out)
            if release:
                buf.release_savepoint()
            else:
                buf.rollback_savepoint()


@given(st.lists(_ops, max_size=6))
def test_commit_matches_the_nesting_model(ops: list[tuple[str, object]]) -> None:
    buf = InvalidationBuffer()
    buf.begin()
    expected: set[str] = set()
    _run(buf, ops, True, expected)
    assert buf.depth == 1
    assert buf.commit() == expected
