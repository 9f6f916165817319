"""Writes Fashion-MNIST test image K as an 8-bit grayscale PNG, and a 28x28 mask whose top half is white (kept in
inpainting, diffusers' RePaintPipeline convention) and bottom half black: the inputs of the inpainting example.

    python3 write_test_png.py K IMAGE.png MASK.png [DATA_DIR]

Standard library only (gzip, zlib, struct)."""
import gzip
import struct
import sys
import zlib


def write_png(path, rows):
    h, w = len(rows), len(rows[0])
    raw = b"".join(b"\x00" + bytes(r) for r in rows)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def main(argv):
    if len(argv) not in (4, 5):
        raise SystemExit(__doc__)
    k, image, mask = int(argv[1]), argv[2], argv[3]
    data = argv[4] if len(argv) == 5 else "/usr/share/datasets/fashion-mnist"
    with gzip.open(f"{data}/t10k-images-idx3-ubyte.gz") as f:
        magic, n, h, w = struct.unpack(">IIII", f.read(16))
        if magic != 0x803 or not 0 <= k < n:
            raise SystemExit(f"not an IDX image file, or no image {k}")
        f.read(k * h * w)
        px = f.read(h * w)
    write_png(image, [px[r * w:(r + 1) * w] for r in range(h)])
    write_png(mask, [[255] * w if r < h // 2 else [0] * w for r in range(h)])


if __name__ == "__main__":
    main(sys.argv)
