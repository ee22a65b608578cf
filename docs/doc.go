// Package docs holds the user documentation (Markdown). Its tests check what the guides tell admins to type on
// other systems against those systems' own references: every PowerShell cmdlet line in docs/*.md is checked
// against the parameter lists of Microsoft's cmdlet reference, kept offline in testdata/cmdlets.txt. There is no
// Go code to import here.
package docs
