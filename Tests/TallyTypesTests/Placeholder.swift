// Local placeholder (untracked): the foundation's test target has no sources on this branch yet.
