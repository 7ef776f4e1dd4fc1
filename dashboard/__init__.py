"""The Streamlit dashboard: compare a teacher's and a student's rationales.

``app.py`` is the page's shell: the sidebar (``sidebar.py``), the two model cards and one tab per view of
``views/`` (compare, summary, ratios, dataset browser), each given a typed ``PageContext`` (``context.py``).
Below the page, without Streamlit: ``environment.py`` (allowed roots, recipe, device), ``checkpoints.py`` (finding
and loading models), ``inputs.py`` (uploads, examples, dataset samples), ``analysis.py`` (running a pair),
``results_file.py`` (the recipe's results), and ``render/`` (HTML, images, plotly figures, tables, exports).
Streamlit is imported by ``app.py``, ``sidebar.py``, ``caching.py``, ``widgets.py`` and the views only.
"""
