"""Image encoding throughput: the bare model vs the end-to-end pipeline, in one process.

    python -m bench.scoring [--images 256] [--models ViT-B-32,shapes-clip] [--workers 1]

For each model: (1) bare model forward images/s on pre-decoded, pre-processed tensors (the
baseline: what the hardware can do); (2) end-to-end ``Encoder.encode_images`` images/s on
JPEG files (read, decode, preprocess in DataLoader workers, encode, write the cache); (3) their
ratio (target >= 0.85: the model should never wait on I/O); (4) a warm-cache rerun's speed-up;
(5) images/s per core beside Data-Juicer's reported ~5.5 rows/s per process for CLIP B/32
(558k samples in over an hour on 28 processes, data-juicer issue #199). ViT-B-32 runs with
random weights (no downloads here): the FLOPs are the same as the pretrained model's.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import resource
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from demo.reference import REFERENCE_WEIGHTS
from demo.shapes import COLORS, POSITIONS, SHAPES, draw_shapes
from integrity.store.embedding_cache import EmbeddingCache
from integrity.detect.encoder import Encoder
from integrity.detect.encoder_config import EncoderConfig

DATA_JUICER_ROWS_PER_PROCESS = 558_000 / 3600 / 28  # ~5.5 rows/s per process


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_corpus(folder: Path, count: int) -> tuple[list[str], list[str]]:
    """``count`` distinct 480x360 JPEGs (photo-sized, so decoding costs what it costs)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    uris, shas = [], []
    for index in range(count):
        image = draw_shapes(rng.choice(list(COLORS)), rng.choice(SHAPES), rng.randint(1, 4),
                            rng.choice(POSITIONS), "large", 360, rng=rng).resize((480, 360))
        path = folder / f"{index:05d}.jpg"
        image.save(path, "JPEG", quality=90)
        uris.append(str(path))
        shas.append(hashlib.sha256(path.read_bytes()).hexdigest())
    return uris, shas


def bare_forward(encoder: Encoder, uris: list[str], batch_size: int) -> float:
    """Images/s of model.encode_image alone, on tensors decoded and preprocessed beforehand."""
    pixels = torch.stack([encoder.clip.preprocess(Image.open(u).convert("RGB")) for u in uris])
    model = encoder.clip.model
    with torch.inference_mode():
        model.encode_image(pixels[:batch_size])  # warm-up
        started = time.perf_counter()
        for start in range(0, len(pixels), batch_size):
            model.encode_image(pixels[start:start + batch_size])
    return len(pixels) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--models", default="ViT-B-32,shapes-clip")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    uris, shas = write_corpus(work / "images", args.images)
    cores = os.cpu_count() or 1
    print(f"{args.images} distinct 480x360 JPEGs, {cores} cores, torch threads "
          f"{torch.get_num_threads()}, DataLoader workers {args.workers}")
    for name in args.models.split(","):
        pretrained = str(REFERENCE_WEIGHTS) if name == "shapes-clip" else None
        cache_root = work / f"cache-{name}"
        config = EncoderConfig(model=name, pretrained=pretrained, device="cpu",
                               batch_size=args.batch_size, workers=args.workers)
        torch.manual_seed(0)
        encoder = Encoder(config, cache=EmbeddingCache(str(cache_root)))
        baseline = bare_forward(encoder, uris, args.batch_size)

        started = time.perf_counter()
        encoder.encode_images(uris, shas)
        cold = time.perf_counter() - started
        end_to_end = len(uris) / cold

        torch.manual_seed(0)
        warm_encoder = Encoder(config, cache=EmbeddingCache(str(cache_root)))
        started = time.perf_counter()
        warm_encoder.encode_images(uris, shas)
        warm = time.perf_counter() - started
        assert warm_encoder.images_encoded == 0, "the warm run must make no model calls"

        print(f"\n{name} ({'random weights' if pretrained is None else 'reference weights'},"
              f" {encoder.clip.preprocess.transforms[0].size} px)")
        print(f"  baseline  bare encode_image on tensors   {baseline:8.1f} images/s")
        print(f"  ours      end-to-end encode_images       {end_to_end:8.1f} images/s"
              f"  (read, decode, preprocess, encode, cache write)")
        print(f"  ratio     end-to-end / bare              {end_to_end / baseline:8.2f}x"
              f"  (target >= 0.85)")
        print(f"  warm cache rerun                         {len(uris) / warm:8.1f} images/s"
              f"  ({cold / warm:.0f}x faster, 0 model calls)")
        print(f"  per core                                 {end_to_end / cores:8.1f} images/s"
              f"  vs Data-Juicer CLIP B/32 ~{DATA_JUICER_ROWS_PER_PROCESS:.1f} rows/s/process")
    print(f"\npeak RSS {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
