"""Pure drawing of the dashboard: explanations, images, tables and results as HTML, PIL images and plotly figures.
No Streamlit and no model code here, so every function is testable on its own (``style``: colours and shared
formatting; ``glossary``: the words the page explains; ``text``, ``images``, ``cards``, ``plots``, ``export``)."""
