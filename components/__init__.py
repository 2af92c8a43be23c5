"""Dashboard pieces: one function per chart or panel, each taking plain data (a RunSnapshot, numpy, dicts).

``charts`` builds Plotly figures and never calls Streamlit; ``data`` holds the pure helpers (names, live
settings, suggestions, the export table); ``panels`` and ``controls`` render with Streamlit; ``live`` draws the
auto-refreshing views; ``session`` ties the controls, the URL and the run manager together.
"""
