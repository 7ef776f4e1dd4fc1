"""The views of the page, one module each; the tabs are drawn from ``VIEWS`` in this order (Compare first: it reads
the inputs the other views can use, ``PageContext.inputs``)."""
from __future__ import annotations

from dashboard.views import browser, compare, ratios, summary

VIEWS = [compare.VIEW, summary.VIEW, ratios.VIEW, browser.VIEW]
