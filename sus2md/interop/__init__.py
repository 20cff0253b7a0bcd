"""The model in other engines: the ASE calculator (``ase``), the openmm-ml plugin (``openmmml``) and
the export for the authors' LAMMPS pair style (``lammps``)."""
