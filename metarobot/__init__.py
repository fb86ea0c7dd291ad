"""metarobot: adapt robot control policies to new dynamics."""

__version__ = "0.1.0"
