"""The Gradio demo's tabs, one module each (restore_tab, compare_tab, lab_tab), the controls they share
(controls) and what the server keeps for all of them (server). `app.py` launches the page and wires them in.

Importing these imports neither torch nor the models: the page is served first, the library loaded after.
"""
