"""The Streamlit dashboard: compare a teacher's and a student's rationales.

``app.py`` is the Streamlit page; ``backend.py`` finds checkpoints, reads inputs and runs the
models; ``render.py`` turns explanations into HTML, images, plotly figures and tables. Only
``app.py`` imports Streamlit.
"""
