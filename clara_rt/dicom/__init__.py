"""The DICOM adapter (Clara Deploy's DICOM Adapter): studies in by DICOM, results back to PACS.

* :mod:`~clara_rt.dicom.config`: the adapter's YAML configuration, checked.
* :mod:`~clara_rt.dicom.scp`: the Storage SCP (C-ECHO, C-STORE) writing instances to disk.
* :mod:`~clara_rt.dicom.tracker`: storage layout and series completion (quiet time).
* :mod:`~clara_rt.dicom.export`: C-STORE SCU sending result files to a destination, with retries.
* :mod:`~clara_rt.dicom.results`: follows jobs and exports their DICOM results.
* :mod:`~clara_rt.dicom.adapter`: :class:`~clara_rt.dicom.adapter.DicomAdapter`, the glue.

pynetdicom (``pip install 'clara-rt[dicom-net]'``) is imported only when a listener or an
export starts, so importing this package, or loading a configuration, does not need it.
"""
