"""Run README.txt and every docs/*.txt as doctests.

The documents live in the source tree (an sdist carries them), not in
the installed package. They are found, in this order, in
``$TRACKSTORE_DOCS`` (a source tree; tox sets it), above this package
(an editable install, a buildout's develop egg, ``--test-path=src``)
and in the current directory. Where none has them the suite fails with
one test that says so: a silent skip would pass a run that tested no
document.

Each document runs in a fresh temporary directory (the working directory
while it runs, also given as ``tmpdir``) with a clean component registry,
so a document may create files and register components freely. Python
subprocesses it starts see the test runner's paths (``PYTHONPATH``).
"""
import doctest
import os
import pathlib
import shutil
import sys
import tempfile
import unittest

import zope.component.testing


HERE = pathlib.Path(__file__).resolve().parent
ENV = 'TRACKSTORE_DOCS'
FLAGS = (doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
         | doctest.REPORT_NDIFF)


def candidates():
    if os.environ.get(ENV):
        yield pathlib.Path(os.environ[ENV]).resolve()
    yield HERE.parents[2]
    yield pathlib.Path.cwd()


def is_source_tree(path):
    return (path / 'README.txt').is_file() \
        and (path / 'docs' / 'zope.txt').is_file()


def source_tree():
    """The directory with README.txt and docs/, or None."""
    for path in candidates():
        if is_source_tree(path):
            return path
    return None


def doc_files(top):
    """README.txt first, then docs/*.txt in name order."""
    return [top / 'README.txt'] + sorted((top / 'docs').glob('*.txt'))


def setUp(test):
    zope.component.testing.setUp(test)
    test.globs['_olddir'] = os.getcwd()
    test.globs['_oldpath'] = os.environ.get('PYTHONPATH')
    test.globs['tmpdir'] = tempfile.mkdtemp(prefix='trackstore-doc-')
    os.chdir(test.globs['tmpdir'])
    # A document shows the commands a user types (``python -m
    # ZEO.runzeo``); under buildout's bin/test or tox they only find
    # their modules through the test runner's paths.
    os.environ['PYTHONPATH'] = os.pathsep.join(p for p in sys.path if p)


def tearDown(test):
    os.chdir(test.globs['_olddir'])
    if test.globs['_oldpath'] is None:
        os.environ.pop('PYTHONPATH', None)
    else:
        os.environ['PYTHONPATH'] = test.globs['_oldpath']
    shutil.rmtree(test.globs['tmpdir'], ignore_errors=True)
    zope.component.testing.tearDown(test)


class DocumentsNotFound(unittest.TestCase):

    def test_documents_found(self):
        self.fail(
            'README.txt and docs/*.txt were not found (looked in: %s). '
            'Run the tests from a source tree (a clone or an unpacked '
            'sdist) or set %s to one.'
            % (', '.join(str(p) for p in candidates()), ENV))


def test_suite():
    top = source_tree()
    if top is None:
        return unittest.defaultTestLoader.loadTestsFromTestCase(
            DocumentsNotFound)
    return unittest.TestSuite(
        doctest.DocFileSuite(
            str(path), module_relative=False, setUp=setUp,
            tearDown=tearDown, optionflags=FLAGS, encoding='utf-8')
        for path in doc_files(top))
