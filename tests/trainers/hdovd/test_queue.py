"""EmbeddingQueue: FIFO order, fixed length, checkpoint round trip."""
import torch

from trainers.hdovd.queues import EmbeddingQueue


def rows(*values):
    return torch.tensor([[float(v), -float(v)] for v in values])


def test_queue_keeps_the_newest_rows_oldest_first():
    queue = EmbeddingQueue(length=3, dim=2)
    assert len(queue) == 0 and queue.contents().shape == (0, 2)
    queue.push(rows(1, 2))
    assert torch.equal(queue.contents(), rows(1, 2))
    queue.push(rows(3, 4))
    assert torch.equal(queue.contents(), rows(2, 3, 4))
    queue.push(rows(5))
    assert torch.equal(queue.contents(), rows(3, 4, 5))


def test_push_longer_than_the_queue_keeps_its_tail():
    queue = EmbeddingQueue(length=3, dim=2)
    queue.push(rows(1))
    queue.push(rows(2, 3, 4, 5, 6))
    assert torch.equal(queue.contents(), rows(4, 5, 6))
    queue.push(rows(7))
    assert torch.equal(queue.contents(), rows(5, 6, 7))


def test_state_dict_restores_contents_and_write_position():
    queue = EmbeddingQueue(length=3, dim=2)
    queue.push(rows(1, 2, 3, 4))
    restored = EmbeddingQueue(length=3, dim=2)
    restored.load_state_dict(queue.state_dict())
    assert torch.equal(restored.contents(), rows(2, 3, 4))
    restored.push(rows(5))
    queue.push(rows(5))
    assert torch.equal(restored.contents(), queue.contents())


def test_pushed_rows_are_detached_copies():
    queue = EmbeddingQueue(length=2, dim=2)
    source = rows(1).requires_grad_()
    queue.push(source)
    assert not queue.contents().requires_grad


def test_zero_length_queue_stays_empty():
    queue = EmbeddingQueue(length=0, dim=2)
    queue.push(rows(1, 2))
    assert queue.contents().shape == (0, 2)
