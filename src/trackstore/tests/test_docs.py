"""Run README.txt and every docs/*.txt as doctests.

Each document runs in a fresh temporary directory (the working directory
while it runs, also given as ``tmpdir``) with a clean component registry,
so a document may create files and register components freely.
"""
import doctest
import os
import pathlib
import shutil
import tempfile
import unittest

import zope.component.testing


HERE = pathlib.Path(__file__).resolve().parent
TOP = HERE.parents[2]
FLAGS = (doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
         | doctest.REPORT_NDIFF)


def doc_files():
    """README.txt first, then docs/*.txt in name order."""
    files = [TOP / 'README.txt']
    files.extend(sorted((TOP / 'docs').glob('*.txt')))
    return [f for f in files if f.exists()]


def setUp(test):
    zope.component.testing.setUp(test)
    test.globs['_olddir'] = os.getcwd()
    test.globs['tmpdir'] = tempfile.mkdtemp(prefix='trackstore-doc-')
    os.chdir(test.globs['tmpdir'])


def tearDown(test):
    os.chdir(test.globs['_olddir'])
    shutil.rmtree(test.globs['tmpdir'], ignore_errors=True)
    zope.component.testing.tearDown(test)


def test_suite():
    return unittest.TestSuite(
        doctest.DocFileSuite(
            str(path), module_relative=False, setUp=setUp,
            tearDown=tearDown, optionflags=FLAGS, encoding='utf-8')
        for path in doc_files())
