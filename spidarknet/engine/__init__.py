"""The one door to darknet: locating the engine, its cfg files, running and loading it.

Only modules in this subpackage start darknet or touch ``ctypes``; the rest of
spidarknet sees Python objects.  ``engine.cfg`` is plain text handling and safe to
import anywhere.
"""
