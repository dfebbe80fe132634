"""The ground floor: errors, atomic outputs, frame-name matching, selection files, metrics, labels.

Nothing here reads detector frames or touches the engine; every other layer may import it.
"""
