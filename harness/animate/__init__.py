"""A movie of the token cloud: dead and live rows of E or W in a fixed 2-D projection, one
movie frame per recorded frame (or per stride), written frame by frame (`python -m harness animate`).

Import from the modules (harness.animate.movie, ...); this file imports nothing.
"""
