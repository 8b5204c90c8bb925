"""progresskit's own plugins, registered through its entry points like any third party's."""
