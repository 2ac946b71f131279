# The metadata lives in pyproject.toml; setup.py stays as the entry point
# that older tools (buildout, ``setup.py develop``) still expect.
from setuptools import setup


setup()
