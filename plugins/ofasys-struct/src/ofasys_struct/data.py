"""Bundled data, generated procedurally and deterministically by seed (nothing is downloaded).

* :func:`build_shop_database` writes a small relational database (``shops``, ``products``, ``orders``) to a
  real SQLite file; :func:`text_to_sql` pairs questions with SQL over it from templates at three difficulties
  (``easy``: one table; ``medium``: aggregates, ordering, grouping; ``hard``: joins, ``having``).
* :func:`table_to_text`: sets of knowledge triples and the sentence that states them.
* :func:`table_qa`: small tables, a question about them and its answer.
* :func:`sudoku`: 4x4 and 9x9 puzzles with a unique solution (:mod:`ofasys_struct.sudoku`).

Every generator returns plain rows (dicts of JSON-friendly values) ready for ``Task.add_dataset``;
:func:`splits` cuts held-out splits that share no question (or puzzle) with the training split.
"""

from __future__ import annotations

import json
import random
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from . import sudoku as _sudoku
from .sql import normalize_sql, run_query

# ------------------------------------------------------------------------------------------------ the database

CITIES = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Madrid", "Dublin", "Vienna"]
SHOP_NAMES = ["Green Market", "Blue Door", "Corner Store", "Sun Bakery", "Old Mill", "River Shop", "Red Barn",
              "Lucky Cat", "Happy Cart", "North Star"]
PRODUCTS = {
    "fruit": ["Apple", "Pear", "Banana", "Lemon", "Mango", "Cherry", "Plum", "Grape"],
    "drink": ["Green Tea", "Coffee", "Apple Juice", "Milk", "Water", "Lemonade", "Black Tea"],
    "bakery": ["Bread", "Cake", "Cookie", "Bagel", "Muffin", "Pie"],
    "dairy": ["Cheese", "Butter", "Yogurt", "Cream", "Goat Cheese"],
    "home": ["Soap", "Lamp", "Candle", "Towel", "Brush", "Basket"],
}


@dataclass
class ShopData:
    """The rows of the shop database (what :func:`build_shop_database` writes)."""

    shops: list[tuple]  # (id, name, city, opened)
    products: list[tuple]  # (id, name, category, price, shop_id)
    orders: list[tuple]  # (id, product_id, quantity, day)

    @classmethod
    def generate(cls, seed: int = 0, n_shops: int = 8, n_products: int = 30, n_orders: int = 120) -> "ShopData":
        rng = random.Random(f"shopdb-{seed}")
        names = rng.sample(SHOP_NAMES, n_shops)
        cities = rng.sample(CITIES, max(2, n_shops - 2))
        shops = [(i + 1, names[i], cities[i % len(cities)] if i < len(cities) else rng.choice(cities),
                  rng.randint(1990, 2020)) for i in range(n_shops)]
        catalogue = [(name, cat) for cat, items in PRODUCTS.items() for name in items]
        chosen = rng.sample(catalogue, n_products)
        products = []
        for i, (name, cat) in enumerate(chosen):
            shop_id = i + 1 if i < n_shops else rng.randint(1, n_shops)  # every shop sells something
            products.append((i + 1, name, cat, rng.randint(1, 60), shop_id))
        orders = [(i + 1, rng.randint(1, n_products), rng.randint(1, 9), rng.randint(1, 28)) for i in range(n_orders)]
        return cls(shops, products, orders)

    def write(self, path: "str | Path") -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            path.unlink()
        conn = sqlite3.connect(str(path))
        try:
            conn.executescript("""
                CREATE TABLE shops (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL,
                                    opened INTEGER NOT NULL);
                CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL,
                                       price INTEGER NOT NULL, shop_id INTEGER NOT NULL REFERENCES shops (id));
                CREATE TABLE orders (id INTEGER PRIMARY KEY, product_id INTEGER NOT NULL REFERENCES products (id),
                                     quantity INTEGER NOT NULL, day INTEGER NOT NULL);
            """)
            conn.executemany("INSERT INTO shops VALUES (?, ?, ?, ?)", self.shops)
            conn.executemany("INSERT INTO products VALUES (?, ?, ?, ?, ?)", self.products)
            conn.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", self.orders)
            conn.commit()
        finally:
            conn.close()
        return path


def build_shop_database(path: "str | Path", seed: int = 0) -> Path:
    """Write the shop database for ``seed`` to ``path`` (replacing it); the same seed gives the same rows."""
    return ShopData.generate(seed).write(path)


# ------------------------------------------------------------------------------------------------ text-to-SQL

# (difficulty, question templates, SQL template, slots). Slots: shop, city, product, category, n (a price),
# year, k (a small count). Questions mention text values in lower case: the schema serialisation's
# question-to-value matching shows the stored spelling, which the SQL must use.
SQL_TEMPLATES: list[tuple[str, tuple[str, ...], str]] = [
    ("easy", ("how many shops are there ?", "count the shops ."), "select count ( * ) from shops"),
    ("easy", ("how many products cost more than {n} ?", "count the products with a price above {n} ."),
     "select count ( * ) from products where price > {n}"),
    ("easy", ("list the names of products in the {category} category .", "which products are {category} ?"),
     "select name from products where category = '{category}'"),
    ("easy", ("what is the price of {product} ?", "how much does {product} cost ?"),
     "select price from products where name = '{product}'"),
    ("easy", ("which city is {shop} in ?", "where is {shop} ?"), "select city from shops where name = '{shop}'"),
    ("easy", ("list the shops in {city} .", "which shops are in {city} ?"),
     "select name from shops where city = '{city}'"),
    ("easy", ("how many shops opened after {year} ?",), "select count ( * ) from shops where opened > {year}"),
    ("medium", ("what is the average price of {category} products ?",),
     "select avg ( price ) from products where category = '{category}'"),
    ("medium", ("what is the most expensive product in the {category} category ?",),
     "select name from products where category = '{category}' order by price desc limit 1"),
    ("medium", ("list the products cheaper than {n} from cheapest to most expensive .",),
     "select name from products where price < {n} order by price"),
    ("medium", ("how many products does each category have ?",),
     "select category , count ( * ) from products group by category"),
    ("medium", ("what is the highest price of a {category} product ?",),
     "select max ( price ) from products where category = '{category}'"),
    ("medium", ("how many {category} products cost less than {n} ?",),
     "select count ( * ) from products where category = '{category}' and price < {n}"),
    ("medium", ("list the {category} products that cost more than {n} .",),
     "select name from products where category = '{category}' and price > {n}"),
    ("hard", ("which products are sold by {shop} ?", "list the products of {shop} ."),
     "select t1.name from products as t1 join shops as t2 on t1.shop_id = t2.id where t2.name = '{shop}'"),
    ("hard", ("what is the total quantity ordered of {product} ?",),
     "select sum ( t1.quantity ) from orders as t1 join products as t2 on t1.product_id = t2.id "
     "where t2.name = '{product}'"),
    ("hard", ("how many orders were placed for products of {shop} ?",),
     "select count ( * ) from orders as t1 join products as t2 on t1.product_id = t2.id join shops as t3 "
     "on t2.shop_id = t3.id where t3.name = '{shop}'"),
    ("hard", ("list the products of shops in {city} .",),
     "select t1.name from products as t1 join shops as t2 on t1.shop_id = t2.id where t2.city = '{city}'"),
    ("hard", ("which shops sell more than {k} products ?",),
     "select t2.name from products as t1 join shops as t2 on t1.shop_id = t2.id group by t2.id "
     "having count ( * ) > {k}"),
]
DIFFICULTIES = ("easy", "medium", "hard")


def _slot_values(data: ShopData) -> dict[str, list[Any]]:
    return {
        "shop": [s[1] for s in data.shops],
        "city": sorted({s[2] for s in data.shops}),
        "product": [p[1] for p in data.products],
        "category": sorted({p[2] for p in data.products}),
        "n": list(range(5, 60, 5)),
        "year": list(range(1990, 2021, 5)),
        "k": [1, 2, 3],
    }


def _fill(template: str, values: dict, lower: bool) -> str:
    shown = {k: (v.lower() if lower and isinstance(v, str) else v) for k, v in values.items()}
    return template.format(**shown)


def sql_pool(database: "str | Path", difficulties: tuple[str, ...] = DIFFICULTIES) -> list[dict]:
    """Every distinct question/SQL pair the templates make over the database (gold queries that fail or return
    nothing are left out): rows ``{"question", "database" (absolute path), "sql", "difficulty", "template"}``."""
    database = Path(database).resolve()
    data = _read_shop_data(database)
    slot_values = _slot_values(data)
    out: list[dict] = []
    seen: set[str] = set()
    for t_index, (difficulty, questions, sql) in enumerate(SQL_TEMPLATES):
        if difficulty not in difficulties:
            continue
        names = sorted({n for q in questions + (sql,) for n in _fields(q)})
        combos: list[dict] = [{}]
        for n in names:
            combos = [dict(c, **{n: v}) for c in combos for v in slot_values[n]]
        for combo in combos:
            gold = normalize_sql(_fill(sql, combo, lower=False))
            res = run_query(database, gold)
            if not res.ok or not res.rows or all(v is None for r in res.rows for v in r):
                continue
            for q in questions:
                question = _fill(q, combo, lower=True)
                if question in seen:
                    continue
                seen.add(question)
                out.append({"question": question, "database": str(database), "sql": gold,
                            "difficulty": difficulty, "template": t_index})
    return out


def _fields(template: str) -> list[str]:
    import string

    return [f for _, f, _, _ in string.Formatter().parse(template) if f]


def _read_shop_data(database: "str | Path") -> ShopData:
    from .schema import connect_readonly

    conn = connect_readonly(database)
    try:
        shops = conn.execute("SELECT id, name, city, opened FROM shops ORDER BY id").fetchall()
        products = conn.execute("SELECT id, name, category, price, shop_id FROM products ORDER BY id").fetchall()
        orders = conn.execute("SELECT id, product_id, quantity, day FROM orders ORDER BY id").fetchall()
    finally:
        conn.close()
    return ShopData(shops, products, orders)


def text_to_sql(database: "str | Path", n_train: int = 800, n_valid: int = 60, n_test: int = 30, seed: int = 0,
                difficulties: tuple[str, ...] = DIFFICULTIES) -> dict[str, list[dict]]:
    """Question/SQL splits over a shop database (:func:`build_shop_database`).

    Held-out pairs are new combinations of values: a combination (template and values) is either held out under
    one of its phrasings or trained on under all of them, never both. Held-out combinations are spread evenly
    over the templates with slots (at most 40% of a template's combinations, so with the default database at most
    97 pairs are held out: ``valid`` is filled first); the training split draws from the rest, repeating pairs
    when it asks for more than the pool has."""
    pool = sql_pool(database, difficulties)
    rng = random.Random(f"text-to-sql-{seed}")
    combos: dict[tuple[int, str], list[dict]] = {}
    for r in pool:
        combos.setdefault((r["template"], r["sql"]), []).append(r)
    by_template: dict[int, list[tuple[int, str]]] = {}
    for key in sorted(combos):
        if _fields(SQL_TEMPLATES[key[0]][2]):
            by_template.setdefault(key[0], []).append(key)
    # round robin over the templates, holding out at most 40% of any template's combinations
    for t in sorted(by_template):
        rng.shuffle(by_template[t])
    caps = {t: max(1, len(keys) * 2 // 5) for t, keys in by_template.items()}
    n_held = min(n_valid + n_test, sum(caps.values()))
    counts = dict.fromkeys(by_template, 0)
    held_keys: list[tuple[int, str]] = []
    while len(held_keys) < n_held:
        for t in sorted(by_template):
            if counts[t] < caps[t] and len(held_keys) < n_held:
                held_keys.append(by_template[t][counts[t]])
                counts[t] += 1
    rng.shuffle(held_keys)
    held = [rng.choice(combos[k]) for k in held_keys]
    held_set = set(held_keys)
    train_pool = [r for k in sorted(combos) if k not in held_set for r in combos[k]]
    rng.shuffle(train_pool)
    return {"train": _take(train_pool, n_train, rng), "valid": held[:n_valid], "test": held[n_valid:n_held]}


def _take(pool: list[dict], n: int, rng: random.Random) -> list[dict]:
    if not pool:
        return []
    out = list(pool[:n])
    while len(out) < n:
        out.append(rng.choice(pool))
    return out


# ------------------------------------------------------------------------------------------------ table-to-text

PEOPLE = ["Alice", "Bruno", "Chen", "Dara", "Emil", "Farah", "Goran", "Hana", "Ivan", "Julia", "Kofi", "Lena",
          "Marco", "Nadia", "Omar", "Petra"]
COMPANIES = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne"]
JOBS = ["teacher", "doctor", "pilot", "farmer", "painter", "writer", "nurse", "chef"]
COUNTRIES = {"Paris": "France", "Rome": "Italy", "Oslo": "Norway", "Lima": "Peru", "Cairo": "Egypt",
             "Madrid": "Spain", "Dublin": "Ireland", "Vienna": "Austria"}

# relation -> (phrase after the subject, object kind)
PERSON_RELATIONS = {
    "birthPlace": ("was born in {o}", "city"),
    "employer": ("works for {o}", "company"),
    "occupation": ("is a {o}", "job"),
    "age": ("is {o} years old", "age"),
}
COMPANY_RELATIONS = {
    "location": ("is located in {o}", "city"),
    "foundingYear": ("was founded in {o}", "year"),
}
CITY_RELATIONS = {"country": ("is in {o}", "country")}


def _join_phrases(phrases: list[str]) -> str:
    if len(phrases) == 1:
        return phrases[0]
    return " , ".join(phrases[:-1]) + " and " + phrases[-1]


def _table_to_text_example(rng: random.Random) -> dict:
    kind = rng.random()
    triples: list[list[Any]] = []
    sentences: list[str] = []

    def obj(kind_: str) -> Any:
        return {"city": lambda: rng.choice(CITIES), "company": lambda: rng.choice(COMPANIES),
                "job": lambda: rng.choice(JOBS), "age": lambda: rng.randrange(20, 70, 5),
                "year": lambda: rng.randrange(1900, 2020, 10)}[kind_]()

    if kind < 0.6:  # a person, 1-3 facts
        subject = rng.choice(PEOPLE)
        rels = rng.sample(list(PERSON_RELATIONS), rng.randint(1, 3))
        phrases = []
        for r in rels:
            phrase, ok = PERSON_RELATIONS[r]
            o = obj(ok)
            triples.append([subject, r, o])
            phrases.append(phrase.format(o=o))
        sentences.append(f"{subject} {_join_phrases(phrases)} .")
    elif kind < 0.85:  # a company, 1-2 facts
        subject = rng.choice(COMPANIES)
        rels = rng.sample(list(COMPANY_RELATIONS), rng.randint(1, 2))
        phrases = []
        for r in rels:
            phrase, ok = COMPANY_RELATIONS[r]
            o = obj(ok)
            triples.append([subject, r, o])
            phrases.append(phrase.format(o=o))
        sentences.append(f"{subject} {_join_phrases(phrases)} .")
    else:  # a person's employer and where it is: two sentences
        person, company, city = rng.choice(PEOPLE), rng.choice(COMPANIES), rng.choice(CITIES)
        triples += [[person, "employer", company], [company, "location", city]]
        sentences += [f"{person} works for {company} .", f"{company} is located in {city} ."]
    return {"triples": triples, "sentence": " ".join(sentences)}


def table_to_text(n: int, seed: int = 0, exclude: "set[str] | None" = None) -> list[dict]:
    """``n`` distinct examples ``{"triples": [[subject, relation, object], ...], "sentence": str}``."""
    rng = random.Random(f"table-to-text-{seed}")
    return _distinct(lambda: _table_to_text_example(rng), n, lambda r: json.dumps(r["triples"]), exclude)


# ------------------------------------------------------------------------------------------------ table QA

QA_TABLES = {
    "people": (["name", "city", "age", "job"],
               lambda rng, name: [name, rng.choice(CITIES), rng.randint(18, 80), rng.choice(JOBS)], PEOPLE),
    "products": (["name", "category", "price", "stock"],
                 lambda rng, name: [name, next(c for c, ps in PRODUCTS.items() if name in ps), rng.randint(1, 60),
                                    rng.randint(0, 99)],
                 [p for ps in PRODUCTS.values() for p in ps]),
}


def _table_qa_example(rng: random.Random) -> dict:
    kind = rng.choice(sorted(QA_TABLES))
    header, make_row, keys = QA_TABLES[kind]
    names = rng.sample(keys, rng.randint(3, 5))
    rows = [make_row(rng, name) for name in names]
    numeric = [i for i, h in enumerate(header) if isinstance(rows[0][i], int)]
    r = rng.random()
    if r < 0.7:  # lookup
        row = rng.choice(rows)
        col = rng.randrange(1, len(header))
        question = f"what is the {header[col]} of {row[0].lower()} ?"
        answer = row[col]
    else:  # argmax / argmin over a numeric column
        col = rng.choice(numeric)
        values = [x[col] for x in rows]
        if len(set(values)) != len(values):
            return _table_qa_example(rng)
        highest = rng.random() < 0.5
        best = rows[values.index(max(values) if highest else min(values))]
        question = f"which {'one' if kind == 'products' else 'person'} has the {'highest' if highest else 'lowest'} " \
                   f"{header[col]} ?"
        answer = best[0]
    return {"table": {"title": kind, "header": header, "rows": rows}, "question": question, "answer": str(answer)}


def table_qa(n: int, seed: int = 0, exclude: "set[str] | None" = None) -> list[dict]:
    """``n`` distinct examples ``{"table": {"title", "header", "rows"}, "question", "answer"}``."""
    rng = random.Random(f"table-qa-{seed}")
    return _distinct(lambda: _table_qa_example(rng), n, lambda r: json.dumps([r["table"], r["question"]]), exclude)


# ------------------------------------------------------------------------------------------------ sudoku


def sudoku(n: int, size: int = 4, blanks: "int | tuple[int, int] | None" = None, seed: int = 0,
           exclude: "set[str] | None" = None) -> list[dict]:
    """``n`` distinct puzzles ``{"puzzle": grid with 0 for blanks, "solution": grid, "blanks": int}`` with a
    unique solution. Default blanks: 4-8 for 4x4, 30-45 for 9x9."""
    if blanks is None:
        blanks = (4, 8) if size == 4 else (30, 45)
    return _sudoku.generate(n, size=size, blanks=blanks, seed=seed, exclude=exclude)


# ------------------------------------------------------------------------------------------------ helpers


def _distinct(make: Callable[[], dict], n: int, key: Callable[[dict], str], exclude: "set[str] | None") -> list[dict]:
    seen = set(exclude or ())
    out: list[dict] = []
    attempts = 0
    while len(out) < n:
        attempts += 1
        if attempts > 100 * n + 1000:
            raise ValueError(f"could not generate {n} distinct examples")
        row = make()
        k = key(row)
        if k in seen:
            continue
        seen.add(k)
        out.append(row)
    return out


def splits(generator: Callable[..., list[dict]], n_train: int, n_valid: int, n_test: int = 0, seed: int = 0,
           key: Callable[[dict], str] | None = None, **kwargs: Any) -> dict[str, list[dict]]:
    """Train/valid/test splits of :func:`table_to_text`, :func:`table_qa` or :func:`sudoku` that share no example:
    the held-out rows are generated first, and training rows are drawn excluding their keys."""
    key = key or _default_key(generator)
    held = generator(n_valid + n_test, seed=seed + 1000, **kwargs)
    taken = {key(r) for r in held}
    train = generator(n_train, seed=seed, exclude=taken, **kwargs)
    return {"train": train, "valid": held[:n_valid], "test": held[n_valid:]}


def _default_key(generator: Callable) -> Callable[[dict], str]:
    if generator is sudoku:
        return lambda r: _sudoku.puzzle_key(r["puzzle"])
    if generator is table_qa:
        return lambda r: json.dumps([r["table"], r["question"]])
    return lambda r: json.dumps(r["triples"])


def write_jsonl(rows: list[dict], path: "str | Path") -> Path:
    """Write rows as JSON lines (the format ``ofasys train`` configs read)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    return path
