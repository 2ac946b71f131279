"""A minimal persistent site, standing in for zope.site or a Plone site
in docs/zope.txt: an object with its own persistent component registry.
"""
from persistent import Persistent
from zope.component.hooks import getSiteManager
from zope.component.persistentregistry import PersistentComponents


class Site(Persistent):

    def __init__(self):
        self._sm = PersistentComponents('site')
        # Local lookups fall back to the global registry.
        self._sm.__bases__ = (getSiteManager(),)

    def getSiteManager(self):
        return self._sm
