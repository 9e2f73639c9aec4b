"""A real out-of-memory error halves the batch instead of failing: a child process caps its own address space
(RLIMIT_AS) so the device path's first chunk cannot be allocated, and must finish with the same embeddings."""

import pytest
import torch

from vlm.oom_backoff import BatchBackoff
from tests.memory_limited import linux_only, run_child

CHILD = '''
import io, resource, sys
import numpy as np, torch
from PIL import Image
import open_clip
from tests.tiny_clip import tiny_model
from vlm.clip_preprocess import CropPreprocess
from vlm.device_decode import EncodedImage
from vlm.region_encoder import RegionEncoder, RegionRequest

torch.set_num_threads(1)
model = tiny_model(0).eval()
pre = CropPreprocess.from_open_clip(dict(open_clip.get_model_preprocess_cfg(model)))
H, W = 1500, 2000  # a padded float32 batch of three is 108 MB; one image 36 MB
def jpeg(seed):
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 255, (H // 50 + 1, W // 50 + 1, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.kron(blocks, np.ones((50, 50, 1), np.uint8))[:H, :W]).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()
windows = np.array([[0, 0, W, H], [10, 10, 500, 400], [100, 200, 1900, 1400]])
requests = [RegionRequest(EncodedImage(jpeg(s), f"{s}.jpg"), f"{s}.jpg", (W, H), windows) for s in range(3)]
encoder = RegionEncoder(model, pre, torch.device("cpu"), torch.float32, max_crops=9, resize="batched")
alone = [encoder.encode([r])[0] for r in requests]  # also warms up threads and the allocator, before the cap
size = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize"))
resource.setrlimit(resource.RLIMIT_AS, (size + 70 * 2 ** 20, resource.RLIM_INFINITY))
together = encoder.encode(requests)
assert all(r.error is None for r in together)
for a, b in zip(alone, together):
    assert np.array_equal(a.embeddings, b.embeddings) and np.array_equal(a.norms, b.norms)
print("backoffs", encoder.backoff.backoffs, "size", encoder.backoff.size)
'''


@linux_only
@pytest.mark.slow
def test_a_real_out_of_memory_error_halves_the_batch_and_the_results_stay_the_same():
    done = run_child(CHILD)
    assert "backoffs 1 size 4" in done.stdout  # 9 crops (three images) did not fit, 4 crops (one image) did
    assert "DefaultCPUAllocator: can't allocate memory" in done.stderr  # the warning names the real error


def test_only_out_of_memory_errors_are_absorbed_and_size_one_gives_up():
    backoff = BatchBackoff(4, "items")
    with pytest.raises(ValueError):
        backoff.run(8, lambda start, stop: (_ for _ in ()).throw(ValueError("not memory")))
    calls = []

    def step(start, stop):
        calls.append((start, stop))
        if stop - start > 1:  # a real allocation far beyond any machine, so the allocator itself refuses
            torch.empty(2 ** 62, dtype=torch.uint8)
        return stop - start

    assert backoff.run(3, step) == [1, 1, 1] and backoff.size == 1 and backoff.backoffs == 2
    with pytest.raises(RuntimeError, match="can't allocate memory"):
        backoff.run(1, lambda start, stop: torch.empty(2 ** 62, dtype=torch.uint8))
