"""Getting pixels safely: allowed hosts, bounded downloads and decoding, CVAT frames."""
