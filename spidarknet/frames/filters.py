"""HDF5 compression filters: which one a dataset needs, and what to install when it is missing.

Facilities store detector frames compressed with filters that HDF5 itself does not ship:
bitshuffle-LZ4 (European XFEL, Dectris detectors), Blosc, Zstd, LZ4.  The PyPI package
``hdf5plugin`` registers them with the HDF5 library that h5py uses as soon as it is
imported.  Without it such a dataset opens fine and its shape is known, but the first read
fails with a bare "can't read data" — :func:`describe_missing_filter` turns that into a
sentence that names the filter and the package that provides it.
"""

from __future__ import annotations

#: HDF5 filter id -> (name people know it by, how to get it).  Ids are the ones registered
#: with The HDF Group (https://github.com/HDFGroup/hdf5_plugins/blob/master/docs/RegisteredFilterPlugins.md).
_HDF5PLUGIN = "pip install hdf5plugin"
KNOWN_FILTERS: dict[int, tuple[str, str]] = {
    1: ("gzip (deflate)", "use an HDF5/h5py build with zlib (every h5py wheel has it)"),
    2: ("shuffle", "use a standard HDF5/h5py build"),
    3: ("Fletcher-32 checksum", "use a standard HDF5/h5py build"),
    4: ("szip", "use an h5py/HDF5 build with szip or libaec (e.g. conda-forge h5py)"),
    5: ("n-bit", "use a standard HDF5/h5py build"),
    6: ("scale-offset", "use a standard HDF5/h5py build"),
    307: ("bzip2", _HDF5PLUGIN),
    32000: ("LZF", "pip install h5py (h5py registers LZF itself)"),
    32001: ("Blosc", _HDF5PLUGIN),
    32004: ("LZ4", _HDF5PLUGIN),
    32008: ("bitshuffle", _HDF5PLUGIN),
    32013: ("ZFP", _HDF5PLUGIN),
    32015: ("Zstd", _HDF5PLUGIN),
    32017: ("SZ", _HDF5PLUGIN),
    32018: ("FCIDECOMP", _HDF5PLUGIN),
    32024: ("SZ3", _HDF5PLUGIN),
    32026: ("Blosc2", _HDF5PLUGIN),
    32028: ("SPERR", _HDF5PLUGIN),
    32033: ("HTJ2K", _HDF5PLUGIN),
}


def dataset_filters(dataset) -> list[tuple[int, str]]:
    """(filter id, name) of each filter in ``dataset``'s pipeline, in pipeline order."""
    plist = dataset.id.get_create_plist()
    found = []
    for i in range(plist.get_nfilters()):
        code, _flags, _values, stored_name = plist.get_filter(i)
        name = KNOWN_FILTERS.get(int(code), (None, None))[0]
        if name is None:
            stored = stored_name.decode("ascii", "replace") if isinstance(stored_name, bytes) else str(stored_name)
            name = stored.strip() or "unknown filter"
        found.append((int(code), name))
    return found


def describe_missing_filter(dataset, *, what: str | None = None) -> str | None:
    """A sentence naming the filter ``dataset`` needs and how to get it, or None if readable.

    ``dataset`` is an open :class:`h5py.Dataset`; ``what`` names it in the sentence
    (default: "<dataset path> in <file>").  A filter counts as missing when HDF5 has not
    registered it and a one-element read fails too (HDF5 loads plugins from
    ``HDF5_PLUGIN_PATH`` only when data is first read, so a filter not yet registered may
    still load).
    """
    from h5py import h5z

    missing = [(code, name) for code, name in dataset_filters(dataset) if not h5z.filter_avail(code)]
    if not missing:
        return None
    if dataset.size:
        try:
            dataset[(0,) * dataset.ndim]
        except OSError:
            pass
        else:
            missing = [(code, name) for code, name in missing if not h5z.filter_avail(code)]
            if not missing:
                return None
    if what is None:
        what = f"{dataset.name} in {dataset.file.filename}"
    code, name = missing[0]
    hint = KNOWN_FILTERS.get(code, (None, "install the HDF5 plugin for this filter id and set "
                                           "HDF5_PLUGIN_PATH to its folder"))[1]
    more = ""
    if len(missing) > 1:
        more = " (it also needs " + ", ".join(f"{n} (filter {c})" for c, n in missing[1:]) + ")"
    return (f"cannot read {what}: compressed with {name} (HDF5 filter {code}), a filter this "
            f"Python's HDF5 lacks{more}: {hint}")
