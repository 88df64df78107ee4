"""Reports of a judged match: report.json, summary.md, report.html and junit.xml."""
