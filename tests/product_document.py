"""Where the product document lives: inside the repository, so a bare clone tests against it.

`docs/product-document.txt` is the product's own documentation (every rule, price, model and template the
product must reproduce); the fidelity tests in `tests/catalog/` and `tests/docs/` read it from here.
"""

from __future__ import annotations

from pathlib import Path

PRODUCT_DOCUMENT = Path(__file__).resolve().parent.parent / "docs" / "product-document.txt"
