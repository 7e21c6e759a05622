"""Tiny raw logs in the three shapes of ``docs/your-data.md``, written by the tests that run its examples.

Each writer is deterministic (a seeded generator), so the console output the guide shows is exact.
"""

from __future__ import annotations

import gzip
import random
from pathlib import Path

#: 2017-11-25 00:00 China time (UTC+8): the first second of the Taobao preset's window.
TAOBAO_START = 1_511_539_200
ECOMMERCE_BRANDS = ("samsung", "apple", "xiaomi", "")  # "" = brand unknown
ECOMMERCE_CATEGORY = 2_053_013_555_631_882_655  # a 19-digit id, as in the public export


def write_taobao(folder: Path) -> Path:
    """``UserBehavior.csv``: headerless ``user,item,category,behavior,timestamp`` over nine days."""
    rng = random.Random(0)
    rows = []
    for user in range(1, 7):
        for k in range(14):
            item = 1000 + (user + k) % 8
            ts = TAOBAO_START + (k % 9) * 86_400 + user * 600 + k * 60
            behavior = rng.choice(["pv", "pv", "pv", "cart", "fav", "buy"])
            rows.append(f"{user},{item},{10 + item % 3},{behavior},{ts}")
    path = folder / "UserBehavior.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def write_movielens_100k(folder: Path) -> Path:
    """``ml-100k/u.data`` (tab-separated, no header) and ``ml-100k/u.item`` (pipe-separated, latin-1,
    19 genre flags) for 8 users and 6 movies."""
    rng = random.Random(1)
    root = folder / "ml-100k"
    root.mkdir(parents=True, exist_ok=True)
    ratings = [
        f"{user}\t{1 + rng.randrange(6)}\t{rng.choice([2, 3, 4, 4, 5])}\t{881_250_949 + 86_400 * k + user}"
        for user in range(1, 9)
        for k in range(12)
    ]
    (root / "u.data").write_text("\n".join(ratings) + "\n")
    movies = []
    for movie in range(1, 7):
        flags = ["0"] * 19
        flags[1 + movie % 5] = "1"  # Action, Adventure, Animation, Children's or Comedy
        flags[8] = "1" if movie % 2 else "0"  # Drama
        title = f"Café {movie} (1995)"
        movies.append(f"{movie}|{title}|01-Jan-1995||http://example.org/{movie}|" + "|".join(flags))
    (root / "u.item").write_bytes(("\n".join(movies) + "\n").encode("latin-1"))
    return root


def write_ecommerce(folder: Path) -> Path:
    """``events.csv.gz``: the e-commerce events export shape (header row, ISO times with ``UTC``,
    19-digit category ids, brand names, ``purchase`` and ``remove_from_cart`` events), three hours."""
    rng = random.Random(0)
    header = "event_time,event_type,product_id,category_id,category_code,brand,price,user_id,user_session"
    rows = [header]
    for k in range(300):
        user = 500 + k % 7
        product = 1000 + rng.randrange(12)
        second = k * 36
        stamp = f"2019-10-01 {second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d} UTC"
        event = rng.choice(["view", "view", "view", "cart", "purchase", "remove_from_cart"])
        brand = ECOMMERCE_BRANDS[product % 4]
        category = ECOMMERCE_CATEGORY + product % 3
        rows.append(f"{stamp},{event},{product},{category},,{brand},9.99,{user},s-{user}")
    path = folder / "events.csv.gz"
    path.write_bytes(gzip.compress(("\n".join(rows) + "\n").encode(), mtime=0))
    return path


WRITERS = {"taobao": write_taobao, "movielens-100k": write_movielens_100k, "ecommerce": write_ecommerce}
