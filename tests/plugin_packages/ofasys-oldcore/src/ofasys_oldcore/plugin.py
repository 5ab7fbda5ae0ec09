"""Never imported: ofasys skips a distribution whose ofasys range excludes the installed core."""

raise RuntimeError("ofasys-oldcore was imported although its ofasys range excludes the installed core")
