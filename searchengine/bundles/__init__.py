"""Model bundles: image, text and speech encoders sharing one embedding space.

Import the modules themselves (registry is plain data; bundle loads torch and open_clip), so that
reading the registry never loads a model library.
"""
