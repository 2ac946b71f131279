"""Sphinx configuration of trackstore's documentation.

The narrative pages are the doctests the test suite runs (README.txt and
docs/*.txt); the API reference is rendered from the interfaces'
docstrings, which are the manual.
"""
import importlib.metadata


project = 'trackstore'
author = 'the trackstore contributors'
copyright = '2026, ' + author
release = importlib.metadata.version('trackstore')
version = '.'.join(release.split('.')[:2])

extensions = [
    'sphinx.ext.autodoc',
    'repoze.sphinx.autointerface',
]

# The doctests are .txt files (zope.testrunner runs them as they are);
# the pages that only gather them are .rst.
source_suffix = {
    '.rst': 'restructuredtext',
    '.txt': 'restructuredtext',
}
root_doc = 'index'
exclude_patterns = ['_build']

# Interfaces list their attributes and methods in the order they were
# written, which is the order the manual reads best in.
autodoc_member_order = 'bysource'
autodoc_default_options = {'members': True}

html_theme = 'alabaster'
html_static_path = []
