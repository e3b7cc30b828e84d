"""The web app: ``blocks`` wires the Gradio Blocks, ``compare`` holds the Compare tab's handlers,
``review`` the Review and Dashboard tabs, ``render`` draws maps and charts, ``examples`` writes the examples offered.
Everything here calls :class:`decodemo.service.Service`; no model code lives in this package.
"""
