"""Sample-quality measurement for Fashion-MNIST diffusion models (measurement only, never part of the product).

The number is a Frechet distance between Gaussians fitted to the 128-d penultimate features of a small CNN
classifier that this script trains on the Fashion-MNIST training set. It is not the Inception-v3 FID: its
values are only comparable with other runs of this script (same classifier weights, same reference set, same
number of images), never with published FIDs.

Subcommands:
  train      train the classifier (also done on first use by the others) and report its test accuracy
  score DIR  Frechet distance of the PNGs in DIR against the test set, the class histogram the classifier
             assigns and, with --labels or --labels-file, the fraction classified as the requested class
  selfcheck  sanity checks that fail (exit status 1) when the measurement cannot tell real from noise
"""

import argparse
import gzip
import hashlib
import json
import os
import re
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_WEIGHTS = os.path.join(HERE, "target", "fashion-classifier.pt")
DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
TRAIN_SEED = 20261207
MIN_TEST_ACCURACY = 0.88


# ---- data -----------------------------------------------------------------------------------------------------

def read_idx(path):
    """An IDX file (gzip or plain) as a numpy array of uint8."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path}: not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: {data.size} bytes of data for shape {dims}")
    return data.reshape(dims)


def load_split(data_dir, split):
    """(images uint8 [n, 28, 28], labels int64 [n]) of 'train' or 't10k'."""
    def find(stem):
        for name in (stem + ".gz", stem):
            p = os.path.join(data_dir, name)
            if os.path.exists(p):
                return p
        raise FileNotFoundError(f"{os.path.join(data_dir, stem)}(.gz) missing: apt-get install dataset-fashion-mnist, "
                                "or pass --data DIR")
    images = read_idx(find(f"{split}-images-idx3-ubyte"))
    labels = read_idx(find(f"{split}-labels-idx1-ubyte")).astype(np.int64)
    return images, labels


def to_tensor(images_u8):
    """uint8 [n, 28, 28] to float32 [n, 1, 28, 28] in [0, 1]: the one normalisation used for training and scoring."""
    return torch.from_numpy(np.ascontiguousarray(images_u8, dtype=np.float32) / 255.0).unsqueeze(1)


# ---- classifier -----------------------------------------------------------------------------------------------

class FashionNet(nn.Module):
    """Two 3x3 conv blocks (16, 32 channels, batch norm, ReLU, 2x2 max-pooling), a 128-d feature layer, 10 logits."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(32)
        self.fc1 = nn.Linear(32 * 7 * 7, 128)
        self.fc2 = nn.Linear(128, 10)

    def features(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.conv2(x))), 2)
        return F.relu(self.fc1(x.flatten(1)))

    def forward(self, x):
        return self.fc2(self.features(x))


@torch.no_grad()
def embed(model, images_u8, batch=500):
    """(features float64 [n, 128], predicted classes int64 [n]) of uint8 images."""
    model.eval()
    feats, preds = [], []
    for i in range(0, len(images_u8), batch):
        f = model.features(to_tensor(images_u8[i:i + batch]))
        feats.append(f.double().numpy())
        preds.append(model.fc2(f).argmax(1).numpy())
    return np.concatenate(feats), np.concatenate(preds)


def train(args):
    torch.manual_seed(TRAIN_SEED)
    rng = np.random.default_rng(TRAIN_SEED)
    xtr, ytr = load_split(args.data, "train")
    xte, yte = load_split(args.data, "t10k")
    model = FashionNet()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x_all, y_all = to_tensor(xtr), torch.from_numpy(ytr)
    t0 = time.time()
    for epoch in range(args.epochs):
        # The last epoch at a third of the rate settles the weights before they are frozen as a feature extractor.
        for g in opt.param_groups:
            g["lr"] = 1e-3 if epoch < args.epochs - 1 or args.epochs == 1 else 3e-4
        model.train()
        order = torch.from_numpy(rng.permutation(len(xtr)))
        total = 0.0
        for i in range(0, len(order), args.batch_size):
            idx = order[i:i + args.batch_size]
            loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        _, pred = embed(model, xte)
        print(f"train: epoch {epoch + 1}/{args.epochs}: loss {total / len(order):.4f}, "
              f"test accuracy {np.mean(pred == yte):.4f}, {time.time() - t0:.0f} s", flush=True)
    seconds = time.time() - t0
    _, pred = embed(model, xte)
    acc = float(np.mean(pred == yte))
    os.makedirs(os.path.dirname(os.path.abspath(args.weights)), exist_ok=True)
    tmp = args.weights + ".tmp"
    torch.save({"state_dict": model.state_dict(), "test_accuracy": acc, "train_seconds": seconds,
                "epochs": args.epochs, "threads": torch.get_num_threads()}, tmp)
    os.replace(tmp, args.weights)
    print(f"train: {args.epochs} epochs in {seconds:.0f} s on {torch.get_num_threads()} threads, "
          f"test accuracy {acc:.4f}; wrote {args.weights}")
    if acc < MIN_TEST_ACCURACY:
        raise SystemExit(f"train: test accuracy {acc:.4f} below {MIN_TEST_ACCURACY}: the features are not trusted")
    return model


def load_model(args):
    """The classifier at args.weights, trained first when the file is missing."""
    if not os.path.exists(args.weights):
        print(f"classifier: {args.weights} missing, training it (a few minutes, once)", flush=True)
        return train(args)
    saved = torch.load(args.weights, map_location="cpu")
    model = FashionNet()
    model.load_state_dict(saved["state_dict"])
    model.eval()
    print(f"classifier: {args.weights} (test accuracy {saved['test_accuracy']:.4f})")
    return model


# ---- Frechet distance -----------------------------------------------------------------------------------------

def gaussian(feats):
    """Mean and covariance (float64, unbiased) of features [n, d]."""
    feats = np.asarray(feats, dtype=np.float64)
    return feats.mean(0), np.cov(feats, rowvar=False)


def sqrt_psd(m):
    """Square root of a symmetric positive semi-definite matrix; round-off negative eigenvalues clamp to 0."""
    w, v = np.linalg.eigh((m + m.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet(mu1, s1, mu2, s2):
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)).

    S1 S2 is not symmetric, but it is similar to sqrt(S1) S2 sqrt(S1), which is symmetric PSD, so
    Tr(sqrtm(S1 S2)) is the sum of the square roots of that matrix's eigenvalues."""
    r = sqrt_psd(s1)
    w = np.linalg.eigvalsh(r @ s2 @ r)
    tr_sqrt = np.sqrt(np.clip(w, 0, None)).sum()
    d = mu1 - mu2
    return float(d @ d + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt)


def reference_stats(model, args):
    """Gaussian of the test set's features (all 10,000 images), cached beside the weights and keyed by their hash."""
    with open(args.weights, "rb") as f:
        key = hashlib.sha256(f.read()).hexdigest()
    cache = os.path.splitext(args.weights)[0] + "-t10k-stats.npz"
    if os.path.exists(cache):
        z = np.load(cache)
        if str(z["key"]) == key:
            return z["mu"], z["sigma"]
    xte, _ = load_split(args.data, "t10k")
    mu, sigma = gaussian(embed(model, xte)[0])
    np.savez(cache + ".tmp.npz", key=key, mu=mu, sigma=sigma)
    os.replace(cache + ".tmp.npz", cache)
    return mu, sigma


# ---- generated images -----------------------------------------------------------------------------------------

def natural_key(name):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def read_png_dir(folder):
    """(file names, uint8 [n, 28, 28]) of every PNG in folder except grid.png, in natural file-name order.

    8-bit grayscale is used as is; RGB(A) whose channels are equal (a 1-channel image written as RGB) takes one
    channel, other RGB is converted to luma (with a warning: the classifier only knows grayscale)."""
    from PIL import Image
    names = sorted((n for n in os.listdir(folder) if n.lower().endswith(".png") and n.lower() != "grid.png"),
                   key=natural_key)
    if not names:
        raise SystemExit(f"score: no PNG files (other than grid.png) in {folder}")
    out, colour = [], 0
    for n in names:
        with Image.open(os.path.join(folder, n)) as im:
            if im.mode in ("L", "P", "1"):
                a = np.asarray(im.convert("L"))
            elif im.mode in ("I;16", "I;16B", "I"):
                a = np.clip(np.round(np.asarray(im, dtype=np.float64) / 257.0), 0, 255).astype(np.uint8)
            else:
                rgb = np.asarray(im.convert("RGB"))
                if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
                    a = rgb[..., 0]
                else:
                    colour += 1
                    a = np.asarray(im.convert("RGB").convert("L"))
        if a.shape != (28, 28):
            raise SystemExit(f"score: {n} is {a.shape[1]}x{a.shape[0]}, the classifier needs 28x28")
        out.append(a)
    if colour:
        print(f"warning: {colour} colour images converted to grayscale luma")
    return names, np.stack(out)


def class_index(token):
    t = token.strip()
    if re.fullmatch(r"\d+", t):
        k = int(t)
        if 0 <= k < 10:
            return k
    norm = re.sub(r"[^a-z]", "", t.lower())
    for k, c in enumerate(CLASSES):
        if norm in (re.sub(r"[^a-z]", "", c.lower()), re.sub(r"[^a-z]", "", c.split("/")[0].lower())):
            return k
    raise SystemExit(f"labels: '{token}' is neither 0-9 nor a class name ({', '.join(CLASSES)})")


def parse_labels(args, n):
    """Requested class per image (int64 [n]) from --labels or --labels-file, or None."""
    if args.labels is None and args.labels_file is None:
        return None
    if args.labels is not None and args.labels_file is not None:
        raise SystemExit("labels: give --labels or --labels-file, not both")
    if args.labels is not None:
        tokens = [t for t in args.labels.split(",") if t.strip()]
    else:
        with open(args.labels_file) as f:
            tokens = [t for t in re.split(r"[\s,]+", f.read()) if t]
    labels = [class_index(t) for t in tokens]
    if len(labels) == 1:
        labels = labels * n
    if len(labels) != n:
        raise SystemExit(f"labels: {len(labels)} labels for {n} images (give one per image, or one for all)")
    return np.array(labels, dtype=np.int64)


def histogram_line(pred):
    counts = np.bincount(pred, minlength=10)
    return "  ".join(f"{k}:{counts[k]}" for k in range(10)), counts


def score(args):
    model = load_model(args)
    names, images = read_png_dir(args.dir)
    n = len(images)
    labels = parse_labels(args, n)
    feats, pred = embed(model, images)
    mu_ref, s_ref = reference_stats(model, args)
    fd = frechet(*gaussian(feats), mu_ref, s_ref)
    # A perfect generator still scores above 0 at a finite n (the covariance estimate's bias and noise): report
    # what n real training images score, over a few draws, as the reference to read the number against.
    xtr, _ = load_split(args.data, "train")
    rng = np.random.default_rng(args.seed)
    floors = [frechet(*gaussian(embed(model, xtr[rng.choice(len(xtr), size=min(n, len(xtr)), replace=False)])[0]),
                      mu_ref, s_ref) for _ in range(args.floor_draws)]
    floor = float(np.mean(floors))
    result = {"dir": os.path.abspath(args.dir), "images": n, "fd": fd, "fd_real_same_n": floor,
              "fd_real_same_n_range": [min(floors), max(floors)],
              "class_counts": np.bincount(pred, minlength=10).tolist()}
    print(f"images: {n} from {args.dir} ({names[0]} .. {names[-1]})")
    if n < 500:
        print(f"warning: {n} images give a noisy, biased Frechet distance; use 1000 or more to compare samplers")
    print(f"FD (classifier features, vs 10,000 test images): {fd:.4f}")
    print(f"FD of {n} real training images, same measure (what a perfect generator scores at this n): {floor:.4f} "
          f"(mean of {len(floors)} draws, {min(floors):.4f} to {max(floors):.4f})")
    line, counts = histogram_line(pred)
    print(f"classified as: {line}")
    print("  (" + ", ".join(f"{k}={c}" for k, c in enumerate(CLASSES)) + ")")
    if labels is not None:
        ok = pred == labels
        result["label_accuracy"] = float(ok.mean())
        per = {}
        for k in np.unique(labels):
            m = labels == k
            per[CLASSES[k]] = float(ok[m].mean())
        result["label_accuracy_per_class"] = per
        print(f"classified as requested: {ok.mean():.4f} ({ok.sum()}/{n}); per requested class: "
              + ", ".join(f"{c} {a:.2f}" for c, a in per.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


def selfcheck(args):
    """Test vs train (same classes, should be near the finite-n floor) and test vs two noise sets (far)."""
    model = load_model(args)
    xtr, ytr = load_split(args.data, "train")
    xte, yte = load_split(args.data, "t10k")
    rng = np.random.default_rng(args.seed)
    n = args.n
    te = xte[rng.choice(len(xte), n, replace=False)]
    tr = xtr[rng.choice(len(xtr), n, replace=False)]
    shuffled = np.stack([img.reshape(-1)[rng.permutation(784)].reshape(28, 28) for img in te])
    uniform = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    g_te = gaussian(embed(model, te)[0])
    fd_real = frechet(*g_te, *gaussian(embed(model, tr)[0]))
    nine = xtr[ytr != 9]
    fd_nine = frechet(*g_te, *gaussian(embed(model, nine[rng.choice(len(nine), n, replace=False)])[0]))
    fd_shuf = frechet(*g_te, *gaussian(embed(model, shuffled)[0]))
    fd_unif = frechet(*g_te, *gaussian(embed(model, uniform)[0]))
    _, pred = embed(model, xte)
    acc = float(np.mean(pred == yte))
    # The Frechet distance's own check: it matches the closed form for commuting covariances (one rotated
    # eigenbasis, so the product is not diagonal), and identical Gaussians give 0 up to round-off, relative to
    # the total variance (square roots of eigenvalues that round-off left near 0 make an absolute bound useless).
    d = 16
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    ea, eb = rng.uniform(0.5, 2, d), rng.uniform(0.5, 2, d)
    a, b = (q * ea) @ q.T, (q * eb) @ q.T
    mu = rng.normal(size=d)
    closed = float(mu @ mu + np.sum((np.sqrt(ea) - np.sqrt(eb)) ** 2))
    formula_err = max(abs(frechet(mu, a, np.zeros(d), b) - closed) / closed,
                      abs(frechet(*g_te, *g_te)) / (2 * np.trace(g_te[1])))
    print(f"selfcheck: classifier test accuracy {acc:.4f} (needs >= {MIN_TEST_ACCURACY})")
    print(f"selfcheck: FD test vs train, {n} images each: {fd_real:.4f} (small)")
    print(f"selfcheck: FD test vs train images of classes 0-8 only (one class missing): {fd_nine:.4f}")
    print(f"selfcheck: FD test vs shuffled-pixel test images: {fd_shuf:.2f}; vs uniform noise: {fd_unif:.2f} (large)")
    print(f"selfcheck: Frechet formula: relative error vs the closed form, and FD(x, x) / Tr(2 S): {formula_err:.2e}")
    failures = []
    if acc < MIN_TEST_ACCURACY:
        failures.append("classifier accuracy too low")
    if formula_err > 1e-7:
        failures.append("Frechet formula off")
    if not fd_real * 20 < min(fd_shuf, fd_unif):
        failures.append("real vs real is not 20x closer than real vs noise")
    if failures:
        print("selfcheck: FAILED: " + "; ".join(failures))
        return 1
    print("selfcheck: passed")
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default=DEFAULT_WEIGHTS, help="classifier weights (default: %(default)s)")
    p.add_argument("--data", default=DEFAULT_DATA, help="Fashion-MNIST IDX files (default: %(default)s)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=2, help="training epochs (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=128, help="training batch (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subsets drawn (default: %(default)s)")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("train", help="(re)train the classifier")
    s = sub.add_parser("score", help="score a folder of PNGs")
    s.add_argument("dir")
    s.add_argument("--labels", help="requested classes: comma list (0-9 or names), one per image in file-name "
                                    "order, or one for all")
    s.add_argument("--labels-file", help="file of requested classes, separated by commas or whitespace")
    s.add_argument("--json", help="also write the results to this JSON file")
    s.add_argument("--floor-draws", type=int, default=5,
                   help="draws of real training images for the same-n reference (default: %(default)s)")
    c = sub.add_parser("selfcheck", help="sanity checks of the measurement")
    c.add_argument("--n", type=int, default=2000, help="images per set (default: %(default)s)")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, args.threads))
    if args.cmd == "train":
        train(args)
        return 0
    return score(args) if args.cmd == "score" else selfcheck(args)


if __name__ == "__main__":
    sys.exit(main())
