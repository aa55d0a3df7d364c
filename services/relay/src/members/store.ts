// The members store moved to @atmos/enrolment (the admin's wizard enrols through it too).
export * from '@atmos/enrolment'
