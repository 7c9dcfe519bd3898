"""Optional utilities built on penzai; import each tool module explicitly."""
